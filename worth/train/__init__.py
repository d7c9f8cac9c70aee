"""Downstream training: what a subset is worth, measured as the held-out accuracy of a model trained on it.

Small models (a linear probe and an MLP on frozen embeddings, a small CNN on raw images) trained seeded and
deterministically, under a fixed number of epochs or a fixed budget of optimiser steps; how is one
:class:`TrainConfig`, shared by the study and the nightly curation. Torch is imported
inside the functions, so importing this package (and ``worth``) loads no torch.
"""

from .config import TrainConfig
from .fit import CLASS_ACCURACY, Evaluation, class_accuracies, class_accuracy_metrics, fit_and_evaluate, resolve_device
from .models import MODELS

__all__ = ["CLASS_ACCURACY", "Evaluation", "MODELS", "TrainConfig", "class_accuracies", "class_accuracy_metrics",
           "fit_and_evaluate", "resolve_device"]
