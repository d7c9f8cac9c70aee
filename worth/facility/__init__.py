"""The facility-location wing: ``Σ_i max_{j∈S} s(i, j)`` without the n×n similarity matrix.

- :mod:`.objective` — the objective, its state and maintained gains;
- :mod:`.similarity` — the one compiled similarity kernel every path shares;
- :mod:`.lists` — the settled lists of the dense mode (rows settled by sorted lists, the rest on demand);
- :mod:`.knn` — the kNN graph of the sparse mode (``neighbors=K``);
- :mod:`.pool` — the thread pool the GEMM + reduction tasks run on.
"""

from .objective import FacilityLocation, FacilityState

__all__ = ["FacilityLocation", "FacilityState"]
