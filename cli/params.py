"""What the command groups share: ``KEY=VALUE`` parameters and the ``--input`` reader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import typer

BUILTIN_INPUTS = ("digits",)


def parse_params(pairs: list[str] | None, argname: str = "--param") -> dict:
    """``["alpha=0.3", "similarity=rbf", "dim=64"]`` → ``{"alpha": 0.3, "similarity": "rbf", "dim": 64}``.

    Values are read as JSON when they parse (numbers, ``true``, lists) and kept as strings otherwise, so string
    parameters such as a similarity name pass as they are.
    """
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE, e.g. {argname} alpha=0.3", param_hint=argname)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def is_store(spec: str) -> bool:
    """Whether ``spec`` names a Zarr embedding store (a remote URL, or a folder with ``zarr.json``)."""
    return "://" in spec or (os.path.isdir(spec) and os.path.exists(os.path.join(spec, "zarr.json")))


def read_store(spec: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows and labels of a complete Zarr embedding store (``worth select --input STORE``)."""
    from storage.store import EmbeddingStore

    store = EmbeddingStore.open(spec)
    if not store.is_complete:
        raise typer.BadParameter(
            f"store {spec} is incomplete ({store.rows_done()} of {store.n} rows); finish it with `worth embed`.",
            param_hint="--input",
        )
    return store.to_numpy(dtype="float64"), store.labels()


def load_matrix(spec: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Load an embedding matrix: a Zarr embedding store, a ``.npy`` file, a ``.npz`` (arrays ``X`` and optional
    ``y``), or ``digits``."""
    if is_store(spec):
        return read_store(spec)
    if spec == "digits":
        from sklearn.datasets import load_digits

        data = load_digits()
        return data.data.astype(np.float64), data.target
    path = Path(spec)
    if not path.exists():
        raise typer.BadParameter(
            f"{spec!r} is neither a file nor a built-in input ({', '.join(BUILTIN_INPUTS)}); "
            "pass a .npy/.npz file of embeddings or a Zarr embedding store.",
            param_hint="--input",
        )
    if path.suffix == ".npz":
        with np.load(path) as z:
            if "X" not in z:
                raise typer.BadParameter(f"{spec} has no array named 'X' (found {list(z)}).", param_hint="--input")
            return z["X"], (z["y"] if "y" in z else None)
    return np.load(path), None
