"""worth — appraise training data and select the subsets worth training on.

The core library: matrix spectral objectives (Vendi Score, log-det/DPP, power trace, scaling-law hybrid),
exact marginal gains from the secular equation, facility location and the neural scaling law, greedy
optimisers under class quotas and budgets, conditioning and mutual information, GreeDi, and a
scikit-learn-style selector.
Pure math over the array API: it never imports Prefect, Dask, Zarr or MLflow.
"""

from .api import Selection, check_options, score, select
from .distributed import distributed_greedy
from .objectives import Properties
from .registry import get_objective, objectives
from .submodularity import submodularity_ratio

__all__ = ["Selection", "Selector", "Properties", "check_options", "distributed_greedy", "get_objective", "objectives", "score",
           "select", "submodularity_ratio"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The selector pulls in scikit-learn (over a second of imports); load it when it is first used.
    if name == "Selector":
        from .selector import Selector

        return Selector
    raise AttributeError(f"module 'worth' has no attribute {name!r}")

