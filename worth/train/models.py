"""The downstream models a subset is appraised with: small on purpose, so that a study trains hundreds.

``linear`` (a linear probe) and ``mlp`` (one hidden layer) read frozen embeddings, or any array whose rows
flatten to a vector; ``cnn`` reads raw images, ``(n, H, W)`` or ``(n, C, H, W)``. Torch is imported inside
:func:`build_model` so that ``import worth`` never loads it.
"""

from __future__ import annotations

MODELS = {
    "linear": "linear probe: one affine layer on the flattened features",
    "mlp": "two-layer perceptron (hidden width `hidden`, ReLU) on the flattened features (the default)",
    "cnn": "two 3×3 conv blocks (16, 32 channels), a 4×4 adaptive pool and a linear head, on (n, [C,] H, W) images",
}


def check_model(model: str) -> str:
    """Return ``model`` if it is a known model name, else raise a ValueError listing the choices."""
    if model not in MODELS:
        raise ValueError(f"model={model!r} is unknown; pass one of {sorted(MODELS)}.")
    return model


def input_shape(model: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The per-item shape the model consumes, from an input array's shape ``(n, ...)``.

    The vector models flatten whatever follows the first axis (a linear probe on raw pixels is a real
    baseline); the CNN needs images, and a single-channel ``(n, H, W)`` stack gains its channel axis.
    """
    item = tuple(int(s) for s in shape[1:])
    if model == "cnn":
        if len(item) == 2:
            return (1, *item)
        if len(item) == 3:
            return item
        raise ValueError(
            f"model='cnn' needs images shaped (n, H, W) or (n, C, H, W); got an array of shape {tuple(shape)}. "
            "Pass raw images, or model='mlp' for embeddings."
        )
    if not item:
        raise ValueError(f"X must have a feature axis, shape (n, d); got shape {tuple(shape)}.")
    size = 1
    for s in item:
        size *= s
    return (size,)


def build_model(model: str, item_shape: tuple[int, ...], n_classes: int, *, hidden: int = 128):
    """A fresh ``torch.nn.Module`` for ``model``, initialised from torch's current RNG state.

    The caller seeds that state (:func:`worth.train.fit_and_evaluate` does, in a forked RNG), which is what
    makes two runs with the same seed bit-identical on the CPU.
    """
    import torch.nn as nn

    if model == "linear":
        return nn.Linear(item_shape[0], n_classes)
    if model == "mlp":
        return nn.Sequential(nn.Linear(item_shape[0], hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
    channels = item_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        # 28×28 and 8×8 alike end as 32×4×4: one head for Fashion-MNIST and digits.
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * 16, n_classes),
    )
