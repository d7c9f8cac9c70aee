"""The appraisal study: which data-value objective predicts held-out accuracy, and under which regime?

Design (:mod:`.design`: subset specs and their realisation, the holdout split), greedy minimisers
(:mod:`.minimise`), rank correlations with bootstrap intervals, spreads and score paths (:mod:`.correlate`),
figures and the markdown report (:mod:`.report`), the configuration (:mod:`.config`) and the in-process
reference driver (:mod:`.study`). Pure Python over :mod:`worth` and :mod:`worth.train`: no orchestration.
"""

from .config import StudyConfig, load_config
from .correlate import correlation_table, path_table, rank_correlation, rank_objectives, spread_table
from .design import SubsetSpec, holdout_split, make_specs, realise
from .minimise import greedy_minimise
from .paths import PathKey, plan_paths, realise_path, realise_paths, realise_subsets, subset_from_paths
from .scoring import score_subsets
from .study import aggregate, report_from_results, result_row, run_study, score_subset, train_subset

__all__ = ["PathKey", "StudyConfig", "SubsetSpec", "plan_paths", "realise_path", "realise_paths", "realise_subsets",
           "score_subsets", "subset_from_paths", "aggregate", "report_from_results", "correlation_table",
           "greedy_minimise", "holdout_split", "load_config", "make_specs", "path_table", "rank_correlation",
           "rank_objectives", "realise", "result_row", "run_study", "score_subset", "spread_table", "train_subset"]
