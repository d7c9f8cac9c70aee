"""The core library stays free of orchestration: importing every module of `worth` loads no Prefect, Dask,
Zarr or MLflow (and `import worth` does not load torch)."""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN = ["prefect", "dask", "distributed", "zarr", "mlflow"]


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_no_module_of_worth_imports_orchestration():
    loaded = _loaded_after(
        "import pkgutil, importlib, worth\n"
        "for mod in pkgutil.walk_packages(worth.__path__, 'worth.'):\n"
        "    importlib.import_module(mod.name)\n"
    )
    assert "worth" in loaded
    assert not loaded & set(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


@pytest.mark.parametrize("heavy", ["torch", *FORBIDDEN])
def test_import_worth_is_light(heavy):
    assert heavy not in _loaded_after("import worth")
