"""worth — appraise training data and select the subsets worth training on.

The core library: matrix spectral objectives (Vendi Score, log-det/DPP, power trace, scaling-law hybrid),
exact marginal gains from the secular equation, greedy optimisers, and a scikit-learn-style selector.
Pure math over the array API: it never imports Prefect, Dask, Zarr or MLflow.
"""

from .api import Selection, score, select
from .objectives import Properties, get_objective, objectives
from .selector import Selector

__all__ = ["Selection", "Selector", "Properties", "get_objective", "objectives", "score", "select"]
__version__ = "0.1.0"
