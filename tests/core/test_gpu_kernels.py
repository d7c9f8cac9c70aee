"""The CUDA root kernels: their C source compiled on the host here, through CuPy on a GPU."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from tests.helpers import make_instance
from worth.spectral.state import SpectralState
from worth.spectral.cuda import ROOTS_SOURCE
from worth.registry import get_objective
from worth.spectral.secular import secular_roots_compiled, zero_cluster_root


def _weights(kind: str, size: int, m: int = 12):
    """Realistic inputs: a rank-deficient state's poles and every candidate's weights (w₀ = the zero cluster)."""
    X = make_instance(kind, n=80, m=m, seed=2)
    state = SpectralState(X, get_objective("power"), "secular", np)
    state.start_from(np.arange(size))
    rows, norms = state._rows(np.arange(size, 80))
    w0, wl = state._weights(rows, norms)
    return state.poles_np, np.ascontiguousarray(np.concatenate([w0[:, None], wl], axis=1))


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    """The kernels' C source built as a host shared library (the same functions the GPU runs)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler on this machine to build the kernel source for the host")
    out = tmp_path_factory.mktemp("kernel")
    src, lib = out / "roots.c", out / "roots.so"
    src.write_text(ROOTS_SOURCE)
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src), "-lm"], check=True)
    return ctypes.CDLL(str(lib))


_PTR = np.ctypeslib.ndpointer(dtype=np.float64, flags="C_CONTIGUOUS")


@pytest.fixture(scope="module")
def host_kernel(host_lib):
    fn = host_lib.worth_zero_root_batch
    fn.argtypes = [_PTR, _PTR, ctypes.c_int, ctypes.c_int, _PTR]
    fn.restype = None

    def run(poles, W):
        out = np.zeros(W.shape[0])
        fn(np.ascontiguousarray(poles, dtype=np.float64), W, W.shape[0], W.shape[1], out)
        return out

    return run


@pytest.fixture(scope="module")
def host_roots(host_lib):
    fn = host_lib.worth_roots_batch
    fn.argtypes = [_PTR, _PTR, ctypes.c_int, ctypes.c_int, _PTR, _PTR]
    fn.restype = None

    def run(poles, W):
        origins, taus = np.zeros_like(W), np.zeros_like(W)
        fn(np.ascontiguousarray(poles, dtype=np.float64), W, W.shape[0], W.shape[1], origins, taus)
        return origins, taus

    return run


@pytest.mark.parametrize("kind", ["gaussian", "duplicates", "clustered", "lowrank"])
@pytest.mark.parametrize("size", [1, 3, 5])  # below every instance's rank: a zero cluster remains
def test_kernel_source_matches_the_compiled_cpu_root(host_kernel, kind, size):
    poles, W = _weights(kind, size)
    ref = zero_cluster_root(poles, W)
    got = host_kernel(poles, W)
    assert np.any(ref > 0)  # the instances do leave the zero cluster
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15 * poles[-1])


def test_kernel_source_without_zero_weight_returns_zero(host_kernel):
    poles = np.array([0.0, 0.5, 1.0])
    W = np.array([[0.0, 0.2, 0.3], [0.1, 0.0, 0.0]])  # no zero-cluster weight; only the zero pole active
    got = host_kernel(poles, W)
    assert got[0] == 0.0
    assert got[1] == pytest.approx(0.1, rel=1e-12)  # one active pole: the root is d + w = 0.1


@pytest.mark.parametrize("kind", ["gaussian", "duplicates", "clustered", "lowrank"])
@pytest.mark.parametrize("size", [3, 12, 30])  # rank-deficient, |S| = m, past m
def test_all_roots_kernel_source_matches_the_compiled_cpu_roots(host_roots, kind, size):
    poles, W = _weights(kind, size)
    o_ref, t_ref = secular_roots_compiled(poles, W)
    o, t = host_roots(poles, W)
    mu, mu_ref = o + t, o_ref + t_ref
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-13, atol=1e-15 * poles[-1])
    # Same origin (nearer pole) where the root moved, and the offset to full relative precision there.
    moved = W > 0
    np.testing.assert_array_equal(o[moved], o_ref[moved])
    np.testing.assert_allclose(t[moved], t_ref[moved], rtol=1e-9, atol=1e-300)
    np.testing.assert_array_equal(t[~moved], 0.0)


@pytest.mark.gpu
def test_cupy_secular_selection_uses_the_kernel_and_matches_cpu():
    cupy = pytest.importorskip("cupy")
    import worth

    X = make_instance("gaussian", n=120, m=16, seed=4)
    ref = worth.select(X, 24, "power", method="secular")
    sel = worth.select(cupy.asarray(X), 24, "power", method="secular")
    np.testing.assert_array_equal(cupy.asnumpy(sel.indices), ref.indices)
    np.testing.assert_allclose(cupy.asnumpy(sel.values), ref.values, rtol=1e-10)


@pytest.mark.gpu
def test_cupy_zero_root_matches_cpu():
    cupy = pytest.importorskip("cupy")
    poles, W = _weights("gaussian", 5)
    got = zero_cluster_root(cupy.asarray(poles), cupy.asarray(W), cupy)
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(got), zero_cluster_root(poles, W), rtol=1e-12)
