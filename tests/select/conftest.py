"""Fixtures of the select tests: a digits embedding store made once per session, copied fresh for each test.

The store is embedded with the inline path (``storage.embedding.embed_into_store``, no Prefect): 1,797 rows,
16-d random projections of the pixels, 256-row chunks (8 chunks: enough to leave some unfinished).
"""

from __future__ import annotations

import shutil

import pytest

CHUNK_ROWS = 256


@pytest.fixture(scope="session")
def digits_template(tmp_path_factory):
    from storage import embed_into_store
    from worth.data.encoders import get_encoder
    from worth.data.sources import load_source

    url = str(tmp_path_factory.mktemp("template") / "digits.zarr")
    embed_into_store(url, load_source("digits"), get_encoder("pixels", dim=16, seed=3), chunk_rows=CHUNK_ROWS)
    return url


@pytest.fixture
def digits_store(digits_template, tmp_path):
    """A private copy of the digits store (manifests written by one test never reach another)."""
    url = str(tmp_path / "digits.zarr")
    shutil.copytree(digits_template, url)
    return url


def manifest_files(url: str, published: bool = False) -> dict[str, bytes]:
    """Every file under the store's ``selections/`` folder (only ``NAME/vNNNN.json`` with ``published``):
    relative path → bytes."""
    import os
    import re

    root = os.path.join(url, "selections")
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if published and not re.fullmatch(r"v\d{4,}\.json", f):
                continue
            path = os.path.join(dirpath, f)
            out[os.path.relpath(path, root)] = open(path, "rb").read()
    return out


@pytest.fixture
def manifest_bytes():
    return manifest_files
