"""Curated versions for the export and ``worth nights`` tests, made on a digits store as the curate flow makes
them (through :func:`storage.curated.publish`), without running the flow."""

from __future__ import annotations

import json
import os

import numpy as np

from storage import curated
from storage.store import EmbeddingStore


def publish_nights(url: str, sizes=(12, 20), seed: int = 0) -> str:
    """Curated versions made as the curate flow makes them (store rows, their classes, each night's additions
    file with its gains), without the flow: night i keeps night i-1's set and adds the next rows."""
    st = EmbeddingStore.open(url)
    folder = curated.curated_dir(url)
    rng = np.random.default_rng(seed)
    order = rng.permutation(st.n)
    previous, prev_acc = [], None
    for night, size in enumerate(sizes, start=1):
        positions = [int(p) for p in order[:size]]
        added = positions[len(previous):]
        labels = st.labels(np.asarray(positions))
        acc = 0.5 + 0.1 * night
        gains = rng.random(len(added)).tolist()
        os.makedirs(os.path.join(folder, "sheets"), exist_ok=True)
        with open(os.path.join(folder, "sheets", f"v{night:04d}-additions.json"), "w") as f:
            json.dump([{"id": str(st.ids([p])[0]), "class": str(st.classes[st.labels([p])[0]]), "gain": g,
                        "store_row": p} for p, g in zip(added, gains)], f)
        record = {"ids": st.ids(np.asarray(positions)).tolist(), "positions": positions,
                  "classes": [str(st.classes[int(v)]) for v in labels], "store_rows": st.n,
                  "objective": "facility-location", "value": 1.0 + night / 3, "accuracy": acc,
                  "flow_run_id": None, "mlflow_run_id": None, "added": st.ids(np.asarray(added)).tolist(),
                  "metrics": {"delta_accuracy": None if prev_acc is None else acc - prev_acc, "n_test": 359,
                              "added": len(added)}}
        curated.publish(folder, record, expected_latest=night - 1)
        previous, prev_acc = positions, acc
    return folder
