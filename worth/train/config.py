"""One training configuration for every caller: the study's subsets and the night's curated set alike.

What a downstream model is, how it is trained and where: one frozen dataclass, checked when it is made, so a
bad value (``lr=0``, ``device="gpu"``, ``epochs=-1``) is refused before any selection or training with the
argument and the fix — not after an hour of selection when the first training starts. The study reads its
training keys from ``study.yaml`` into one (:attr:`worth.appraisal.StudyConfig.train`); the night's options build
one from their ``model``, ``epochs`` and ``seed``. :meth:`TrainConfig.fit` is the one call of
:func:`worth.train.fit_and_evaluate` both make.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .models import check_model

#: Devices a config may name: checked for form here, for presence when training starts (``resolve_device``).
_DEVICE = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")
BUDGETS = ("epochs", "steps")


def _positive_int(value: Any, name: str, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer, e.g. {name}={example}.")
    return value


@dataclass(frozen=True)
class TrainConfig:
    """How a downstream model is trained (:func:`worth.train.fit_and_evaluate`).

    Attributes
    ----------
    model : {"linear", "mlp", "cnn"}
        The downstream model (``cnn`` trains on raw images).
    epochs, steps : int
        Passes over the subset, and the fixed budget of optimiser steps of a ``budget`` regime: which one a
        training uses is chosen per call (:meth:`fit`'s ``budget``).
    batch_size, hidden : int
        Rows per step; hidden width of ``mlp``.
    lr, weight_decay : float
        AdamW's learning rate (> 0) and decoupled weight decay (>= 0).
    threads : int
        Torch intra-op threads during a training: 1, since a Dask worker runs one training per core.
    device : str
        ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when torch sees one).
    seed : int
        Seeds the initialisation and the batch order (a study's subsets pass their own).
    """

    model: str = "mlp"
    epochs: int = 30
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 128
    threads: int = 1
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        check_model(self.model)
        for name, example in (("epochs", "30"), ("steps", "300"), ("batch_size", "64"), ("hidden", "128"),
                              ("threads", "1")):
            _positive_int(getattr(self, name), name, example)
        for name, positive, example in (("lr", True, "1e-3"), ("weight_decay", False, "1e-4")):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or value < 0 or (positive and value == 0)):
                raise ValueError(f"{name}={value!r} must be a finite {'positive' if positive else 'non-negative'} "
                                 f"number, e.g. {name}={example}.")
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise ValueError(f"device={self.device!r} is unknown; pass 'cpu', 'cuda' (or 'cuda:N') or 'auto'.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed={self.seed!r} must be an integer, e.g. seed=0.")

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The names of the training keys (as ``study.yaml`` spells them)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The training keys of ``data`` (a study config, a night's options); other keys are ignored."""
        return cls(**{k: data[k] for k in cls.fields() if k in data})

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data (``TrainConfig(**to_dict())`` round-trips)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (checked like a new one)."""
        return dataclasses.replace(self, **changes)

    def fit_kwargs(self, budget: str = "epochs", seed: int | None = None) -> dict[str, Any]:
        """The keyword arguments of :func:`worth.train.fit_and_evaluate` for a training under ``budget``."""
        if budget not in BUDGETS:
            raise ValueError(f"budget={budget!r}: pass 'epochs' (passes over the subset) or 'steps' (a fixed "
                             "number of optimiser steps).")
        return {"model": self.model, budget: getattr(self, budget), "batch_size": self.batch_size, "lr": self.lr,
                "weight_decay": self.weight_decay, "hidden": self.hidden, "seed": self.seed if seed is None else seed,
                "device": self.device, "threads": self.threads}

    def fit(self, X_train, y_train, X_test, y_test, n_classes: int, *, budget: str = "epochs",
            seed: int | None = None):
        """Train and evaluate (:func:`worth.train.fit_and_evaluate`) under this config; ``seed`` overrides."""
        from .fit import fit_and_evaluate

        return fit_and_evaluate(X_train, y_train, X_test, y_test, n_classes, **self.fit_kwargs(budget, seed))
