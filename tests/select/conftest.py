"""Fixtures of the select tests: a digits embedding store made once per session, copied fresh for each test.

The store is embedded with the inline path (``storage.embedding.embed_into_store``, no Prefect): 1,797 rows,
16-d random projections of the pixels, 256-row chunks (8 chunks: enough to leave some unfinished).
"""

from __future__ import annotations

import pytest

from tests.helpers import copy_store, make_digits_store, manifest_files

CHUNK_ROWS = 256


@pytest.fixture(scope="session")
def digits_template(tmp_path_factory):
    return make_digits_store(tmp_path_factory.mktemp("template") / "digits.zarr", dim=16, seed=3,
                             chunk_rows=CHUNK_ROWS)


@pytest.fixture
def digits_store(digits_template, tmp_path):
    """A private copy of the digits store (manifests written by one test never reach another)."""
    return copy_store(digits_template, tmp_path / "digits.zarr")


@pytest.fixture
def manifest_bytes():
    return manifest_files
