"""The spectral wing: exact marginal gains of matrix spectral functions without an eigendecomposition per candidate.

- :mod:`.objectives` — the spectral objectives (Vendi, entropy, log-det, power, hybrid) and what each declares;
- :mod:`.state` — ``SpectralState``: the eigenpairs of ``C_S`` for the current set and their update after a pick;
- :mod:`.methods` — the gain methods (oracle, secular, closed form, quadrature, Sherman–Morrison) behind one
  protocol, ``METHODS`` and ``resolve_method`` (where ``"auto"`` is decided);
- :mod:`.secular` — roots of the secular equation: numba-compiled on NumPy, array-API (``secular_roots_portable``)
  elsewhere, and the moved sums of φ over the roots;
- :mod:`.cuda` — the CUDA kernels behind the roots on CuPy;
- :mod:`.eigupdate` — the rank-one eigen-update after each pick (LAPACK's divide-and-conquer merge);
- :mod:`.quadrature` — the shifted log-det quadrature rule fitted to φ′;
- :mod:`.statkey` — the submodular statistic on which greedy evaluates the Vendi Score lazily.

The math is written down in ``docs/gains.md``.
"""
