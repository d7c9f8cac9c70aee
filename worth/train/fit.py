"""Train a small model on one subset and evaluate it on the held-out rows: the measure a subset is worth.

Two training regimes, because they answer different questions:

- **epochs** (``epochs=E``): every item is seen ``E`` times, so a larger subset also buys more optimiser
  steps. This is the fixed-size and class-balanced regimes' training.
- **steps** (``steps=T``): exactly ``T`` optimiser steps whatever the subset size (the fixed training budget
  of DataComp): a subset of 50 and one of 5,000 cost the same compute, so accuracy measures what the data is
  worth at equal cost, not how long the model trained.

Determinism: the model is initialised and the batches drawn from RNGs seeded by ``seed`` (the global torch
RNG is forked and restored, so a caller's own RNG state is left as it was), and torch's intra-op threads
are set to ``threads`` for the duration of the call. On the CPU the same inputs, seed and thread count give
bit-identical metrics; CUDA kernels may not be bit-reproducible.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .models import build_model, check_model, input_shape


@dataclass
class Evaluation:
    """What training on a subset is worth, measured on the held-out rows.

    Attributes
    ----------
    accuracy : float
        Top-1 accuracy on the held-out rows.
    per_class_accuracy : list of float
        Accuracy on the held-out rows of each class ``0..n_classes-1``; NaN for a class with no held-out row.
    loss : float
        Mean cross-entropy on the held-out rows (nats).
    train_seconds : float
        Wall time of the optimisation loop (not the evaluation).
    steps : int
        Optimiser steps taken.
    n_train : int
        Rows trained on.
    model, device : str
        The model name and the device it ran on.
    """

    accuracy: float
    per_class_accuracy: list[float]
    loss: float
    train_seconds: float
    steps: int
    n_train: int
    model: str
    device: str
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain types only (for JSON, Dask and MLflow)."""
        return asdict(self)


#: The name of class ``c``'s held-out accuracy as a metric: the study's subset runs and the night's runs alike.
CLASS_ACCURACY = "accuracy.class.{}"


def class_accuracy_metrics(per_class_accuracy) -> dict[str, float | None]:
    """``{"accuracy.class.C": accuracy}`` for every class of :attr:`Evaluation.per_class_accuracy` (the one
    naming of per-class held-out accuracy in MLflow and in records); ``None`` for a class without held-out rows
    (NaN in the evaluation: undefined, so it is not logged, and a JSON record can hold it)."""
    return {CLASS_ACCURACY.format(c): (float(v) if v is not None and np.isfinite(v) else None)
            for c, v in enumerate(per_class_accuracy)}


def class_accuracies(metrics, n_classes: int) -> list[float]:
    """The per-class accuracies back from metrics named by :func:`class_accuracy_metrics` (NaN where absent)."""
    out = []
    for c in range(n_classes):
        v = metrics.get(CLASS_ACCURACY.format(c))
        out.append(float("nan") if v is None else float(v))
    return out


def _positive_int(value, name: str, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer, e.g. {name}={example}.")
    return int(value)


def _check_labels(y, n_rows: int, n_classes: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_rows:
        raise ValueError(f"{name} must hold one label per row: {n_rows} rows but {name} has shape {y.shape}.")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
            raise ValueError(f"{name} must be integer class ids in [0, n_classes); got dtype {y.dtype}.")
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        raise ValueError(
            f"{name} has labels outside [0, n_classes={n_classes}): e.g. {sorted(set(y[bad].tolist()))[:5]}; "
            "pass n_classes= the number of classes of the whole pool."
        )
    return y


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when torch sees a GPU, else ``"cpu"``; ``"cuda"`` without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or device.startswith("cuda"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but torch sees no CUDA device; pass device='cpu' or 'auto'.")
        return device
    raise ValueError(f"device={device!r} is unknown; pass 'cpu', 'cuda' (or 'cuda:N') or 'auto'.")


def _standardiser(X: np.ndarray, per_feature: bool):
    """Mean and scale from the training subset alone (the model never sees other rows).

    Why: pixels (0–255, 0–16) and embeddings differ in scale by orders of magnitude, and one learning rate
    should mean the same for both. Vector models standardise each feature (constant features keep scale 1);
    the CNN uses one scalar mean and scale, which keeps the image's spatial contrast.
    """
    axis = 0 if per_feature else None
    mean = X.mean(axis=axis, keepdims=per_feature)
    std = X.std(axis=axis, keepdims=per_feature)
    std = np.where(std > 1e-8, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def fit_and_evaluate(
    X_train,
    y_train,
    X_test,
    y_test,
    n_classes: int,
    *,
    model: str = "mlp",
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    hidden: int = 128,
    seed: int = 0,
    device: str = "cpu",
    threads: int | None = 1,
) -> Evaluation:
    """Train ``model`` on ``(X_train, y_train)`` and evaluate it on ``(X_test, y_test)``.

    Parameters
    ----------
    X_train, y_train : arrays
        The subset's rows (``(k, d)`` embeddings, or ``(k, H, W)`` / ``(k, C, H, W)`` images for ``cnn``)
        and their integer labels.
    X_test, y_test : arrays
        Held-out rows with the same per-item shape, and their labels.
    n_classes : int
        Classes of the whole pool: the model has this many outputs, so a class absent from the subset is
        still a class the model can (wrongly) never predict — which is the point of appraising the subset.
    model : {"linear", "mlp", "cnn"}
    epochs, steps : int
        Exactly one: passes over the subset, or a fixed number of optimiser steps whatever the subset size.
    batch_size : int
        Rows per step (the whole subset when it is smaller).
    lr, weight_decay : float
        AdamW's learning rate and decoupled weight decay.
    hidden : int
        Hidden width of ``mlp``.
    seed : int
        Seeds the initialisation and the batch order.
    device : {"cpu", "cuda", "auto"}
    threads : int or None
        Torch intra-op threads during the call (``None``: leave torch's setting). A Dask worker running one
        training per core wants 1.

    Returns
    -------
    Evaluation
    """
    check_model(model)
    if (epochs is None) == (steps is None):
        raise ValueError("pass exactly one of epochs= (passes over the subset) or steps= (a fixed budget of "
                         f"optimiser steps); got epochs={epochs!r}, steps={steps!r}.")
    if epochs is not None:
        epochs = _positive_int(epochs, "epochs", "30")
    else:
        steps = _positive_int(steps, "steps", "500")
    batch_size = _positive_int(batch_size, "batch_size", "64")
    n_classes = _positive_int(n_classes, "n_classes", "10")
    hidden = _positive_int(hidden, "hidden", "128")
    for name, value in (("lr", lr), ("weight_decay", weight_decay)):
        if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0 or (name == "lr" and value == 0):
            raise ValueError(f"{name}={value!r} must be a finite {'positive' if name == 'lr' else 'non-negative'} "
                             f"number, e.g. {name}={'1e-3' if name == 'lr' else '1e-4'}.")
    if threads is not None:
        threads = _positive_int(threads, "threads", "1")
    X_train = np.asarray(X_train, dtype=np.float32)
    X_test = np.asarray(X_test, dtype=np.float32)
    if X_train.shape[0] == 0:
        raise ValueError("the training subset is empty: select at least one row (k >= 1).")
    if X_test.shape[0] == 0:
        raise ValueError("the held-out set is empty: pass at least one held-out row to evaluate on.")
    item = input_shape(model, X_train.shape)
    if X_test.shape[1:] != X_train.shape[1:]:
        raise ValueError(f"X_test rows have shape {X_test.shape[1:]} but X_train rows {X_train.shape[1:]}; "
                         "evaluate on rows of the same kind (same embedding or image size).")
    y_train = _check_labels(y_train, X_train.shape[0], n_classes, "y_train")
    y_test = _check_labels(y_test, X_test.shape[0], n_classes, "y_test")
    if not (np.isfinite(X_train).all() and np.isfinite(X_test).all()):
        raise ValueError("X_train or X_test holds NaN or inf values; clean or drop those rows first.")

    import torch
    import torch.nn.functional as F

    dev = resolve_device(device)
    mean, std = _standardiser(X_train, per_feature=model != "cnn")
    Xtr = torch.from_numpy(((X_train - mean) / std).reshape(-1, *item)).to(dev)
    Xte = torch.from_numpy(((X_test - mean) / std).reshape(-1, *item)).to(dev)
    ytr = torch.from_numpy(y_train).to(dev)
    yte = torch.from_numpy(y_test).to(dev)
    n = Xtr.shape[0]
    bs = min(batch_size, n)
    per_epoch = -(-n // bs)
    total = epochs * per_epoch if epochs is not None else steps

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_model(model, item, n_classes, hidden=hidden).to(dev)
        order_rng = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        net.train()
        t0 = time.perf_counter()
        done = 0
        while done < total:
            perm = torch.randperm(n, generator=order_rng).to(dev)
            for start in range(0, n, bs):
                if done == total:
                    break
                batch = perm[start:start + bs]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(Xtr[batch]), ytr[batch]).backward()
                opt.step()
                done += 1
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        net.eval()
        with torch.no_grad():
            logits = torch.cat([net(Xte[s:s + 4096]) for s in range(0, Xte.shape[0], 4096)])
            loss = float(F.cross_entropy(logits, yte))
            pred = logits.argmax(1).cpu().numpy()
    finally:
        torch.set_num_threads(old_threads)
    correct = pred == y_test
    per_class = [float(correct[y_test == c].mean()) if (y_test == c).any() else float("nan")
                 for c in range(n_classes)]
    return Evaluation(accuracy=float(correct.mean()), per_class_accuracy=per_class, loss=loss,
                      train_seconds=seconds, steps=int(done), n_train=int(n), model=model, device=dev)
