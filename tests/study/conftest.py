"""Fixtures of the study tests: a digits store (pixels projected to 32 dimensions).

The study config of the tests is ``tiny.yaml`` beside this file, smaller than ``--quick`` on purpose
(2 objectives, k = 20, 9 subsets per regime, a few epochs): the tests check the orchestration — runs, keys,
artifacts, resume — not the study's findings, and CI runs everything on 2 cores.
"""

from __future__ import annotations

import pytest

from tests.helpers import make_digits_store


@pytest.fixture(scope="session")
def digits_store(tmp_path_factory):
    """A complete, labelled digits store with no held-out split of its own (the study records one)."""
    return make_digits_store(tmp_path_factory.mktemp("study-store") / "digits.zarr", dim=32, seed=0, chunk_rows=512)
