"""What the command groups share: ``KEY=VALUE`` parameters, the ``--input`` reader, labels and quotas, the
selection-file reader and the ``--out`` check.

Every check here runs before any work and raises :class:`typer.BadParameter` naming the option and the fix, so a
command never computes for minutes and then fails on its input or its output path.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer

BUILTIN_INPUTS = ("digits",)


def parse_params(pairs: list[str] | None, argname: str = "--param") -> dict:
    """``["alpha=0.3", "similarity=rbf", "dim=64"]`` → ``{"alpha": 0.3, "similarity": "rbf", "dim": 64}``.

    Values are read as JSON when they parse (numbers, ``true``, lists) and kept as strings otherwise, so string
    parameters such as a similarity name pass as they are.
    """
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE, e.g. {argname} alpha=0.3", param_hint=argname)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@dataclass(frozen=True)
class Inputs:
    """What ``--input`` holds.

    Attributes
    ----------
    X : numpy.ndarray
        ``(n, m)`` finite float rows.
    labels : numpy.ndarray or None
        Class of each row (−1: unknown) when the input has them: a store's labels, a ``.npz``'s ``y``/``labels``.
    ids : numpy.ndarray or None
        Item ids of a store (or a ``.npz``'s ``ids``): a selection written from them names items, not positions.
    classes : list of str or None
        Class names, ``classes[label]``, when the input has them.
    """

    X: np.ndarray
    labels: np.ndarray | None = None
    ids: np.ndarray | None = None
    classes: list[str] | None = None


def is_store(spec: str) -> bool:
    """Whether ``spec`` names a Zarr hierarchy (a remote URL, or a folder with ``zarr.json``)."""
    return "://" in spec or (os.path.isdir(spec) and os.path.exists(os.path.join(spec, "zarr.json")))


def read_store(spec: str) -> Inputs:
    """Rows, labels, ids and class names of a complete Zarr embedding store (``--input STORE``).

    Every chunk is checked against its digest as it is read: a damaged store raises
    :class:`storage.StoreDamagedError` naming the chunk and the repair, never rows with holes in them.
    """
    from storage.store import EmbeddingStore

    try:
        store = EmbeddingStore.open(spec)
    except (ValueError, FileNotFoundError) as exc:  # a Zarr group that is not a store, a missing URL
        raise typer.BadParameter(str(exc), param_hint="--input") from None
    if not store.is_complete:
        raise typer.BadParameter(
            f"store {spec} is incomplete ({store.rows_done()} of {store.n} rows); finish it with `worth embed`.",
            param_hint="--input",
        )
    if store.n == 0:
        raise typer.BadParameter(f"store {spec} holds no rows; fill it with `worth embed`.", param_hint="--input")
    labels = store.labels()
    return Inputs(store.to_numpy(dtype="float64"), labels if (labels >= 0).any() else None, store.ids(),
                  store.classes)


def _read_npy(path: Path) -> np.ndarray:
    """np.load of a .npy (or one array of a .npz) with every way a file can be wrong said in one line."""
    name = str(path)
    if path.stat().st_size == 0:
        raise typer.BadParameter(f"{name} is empty (0 bytes); write it with numpy.save.", param_hint="--input")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickled" in str(exc):
            with open(path, "rb") as f:
                magic = f.read(6)
            why = ("holds Python objects (an object array), not numbers; save a numeric array"
                   if magic == b"\x93NUMPY" else "is not a NumPy file (no .npy header); write it with numpy.save")
            raise typer.BadParameter(f"{name} {why}.", param_hint="--input") from None
        raise typer.BadParameter(f"{name} is truncated or damaged ({exc}); write it again with numpy.save.",
                                 param_hint="--input") from None
    except (EOFError, OSError, zipfile.BadZipFile) as exc:
        raise typer.BadParameter(f"{name} is truncated or damaged ({type(exc).__name__}: {exc}); write it again.",
                                 param_hint="--input") from None


def _check_rows(X: np.ndarray, spec: str) -> np.ndarray:
    if X.dtype.kind not in "biuf":
        raise typer.BadParameter(f"{spec} holds {X.dtype} values; give numbers (float embeddings).",
                                 param_hint="--input")
    if X.ndim != 2:
        raise typer.BadParameter(f"{spec} has shape {X.shape}; give a 2-D array, one row per item.",
                                 param_hint="--input")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise typer.BadParameter(f"{spec} has shape {X.shape}: no rows or no columns to select from.",
                                 param_hint="--input")
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise typer.BadParameter(f"{spec}: rows {bad[:5].tolist()} ({bad.size} in all) hold NaN or inf; drop or "
                                 "impute them first.", param_hint="--input")
    return X


def load_input(spec: str) -> Inputs:
    """Read ``--input``: a Zarr embedding store, a ``.npy`` file, a ``.npz`` (``X``, optional ``y``/``labels``
    and ``ids``), or ``digits``. Refuses, with one line naming the fix, anything else: missing, empty,
    truncated or non-NumPy files, object arrays, folders and Zarr groups that are not stores, NaN rows."""
    if is_store(spec):
        inputs = read_store(spec)
        return Inputs(_check_rows(inputs.X, spec), inputs.labels, inputs.ids, inputs.classes)
    if spec == "digits":
        from sklearn.datasets import load_digits

        data = load_digits()
        return Inputs(data.data.astype(np.float64), data.target.astype(np.int64))
    path = Path(spec)
    if path.is_dir():
        raise typer.BadParameter(f"{spec} is a folder but not a Zarr embedding store (no zarr.json); pass a store "
                                 "made by `worth embed`, or a .npy/.npz file.", param_hint="--input")
    if not path.exists():
        raise typer.BadParameter(
            f"{spec!r} is neither a file nor a built-in input ({', '.join(BUILTIN_INPUTS)}); "
            "pass a .npy/.npz file of embeddings or a Zarr embedding store.",
            param_hint="--input",
        )
    if path.suffix != ".npz":
        return Inputs(_check_rows(_read_npy(path), spec))
    try:
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z:
                raise typer.BadParameter(f"{spec} has no array named 'X' (found {list(z)}).", param_hint="--input")
            X = z["X"]
            y = z["y"] if "y" in z else z["labels"] if "labels" in z else None
            ids = z["ids"] if "ids" in z else None
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise typer.BadParameter(f"{spec} is not a readable .npz ({exc}); write it with numpy.savez.",
                                 param_hint="--input") from None
    X = _check_rows(X, spec)
    for name, arr in (("y", y), ("ids", ids)):
        if arr is not None and (arr.ndim != 1 or len(arr) != len(X)):
            raise typer.BadParameter(f"{spec}: '{name}' has shape {arr.shape} for {len(X)} rows; give one entry per "
                                     "row.", param_hint="--input")
    if y is not None and y.dtype.kind not in "iu":
        raise typer.BadParameter(f"{spec}: labels 'y' are {y.dtype}; give integer class numbers (−1: unknown).",
                                 param_hint="--input")
    return Inputs(X, None if y is None else y.astype(np.int64), None if ids is None else ids.astype(str))


def resolve_labels(inputs: Inputs, labels: str | None) -> np.ndarray | None:
    """The labels a selection uses: ``--labels`` as given (``input``: the input's own, the default; ``none``;
    or a ``.npy`` of one integer class per row)."""
    if labels in (None, "input"):
        return inputs.labels
    if labels == "none":
        return None
    path = Path(labels)
    if not path.is_file():
        raise typer.BadParameter(f"{labels!r}: give 'input' (the input's labels), 'none', or a .npy file of one "
                                 "integer class per row.", param_hint="--labels")
    y = _read_npy(path)
    n = inputs.X.shape[0]
    if y.ndim != 1 or len(y) != n or y.dtype.kind not in "iu":
        raise typer.BadParameter(f"{labels} holds {y.dtype} of shape {y.shape}; give {n} integer class numbers "
                                 "(−1: unknown).", param_hint="--labels")
    return y.astype(np.int64)


def parse_quotas(spec: str | None, labels: np.ndarray | None) -> dict[int, int] | str | None:
    """``--quotas``: ``balanced``, or ``CLASS=COUNT,...`` (``0=10,1=5``), or a JSON object; needs labels."""
    if spec is None:
        return None
    if labels is None:
        raise typer.BadParameter("quotas need labels: use an input with labels (a store, a .npz with 'y') or pass "
                                 "--labels FILE.npy.", param_hint="--quotas")
    if spec == "balanced":
        return spec
    try:
        raw = json.loads(spec) if spec.lstrip().startswith("{") else dict(p.split("=", 1) for p in spec.split(","))
        quotas = {int(c): int(q) for c, q in raw.items()}
    except (ValueError, TypeError):
        raise typer.BadParameter(f"{spec!r}: give 'balanced', CLASS=COUNT pairs (0=10,1=5) or a JSON object.",
                                 param_hint="--quotas") from None
    if any(q < 0 for q in quotas.values()):
        raise typer.BadParameter(f"{spec!r}: quotas must be counts >= 0.", param_hint="--quotas")
    return quotas


@dataclass(frozen=True)
class SelectionFile:
    """A selection read back for ``worth score``: its indices and, from a JSON, the objective and parameters."""

    indices: np.ndarray
    objective: str | None = None
    params: dict | None = None
    normalize: bool | None = None


def load_selection(path: Path, n: int, argname: str = "--indices") -> SelectionFile:
    """Read a selection (JSON from ``worth select --out``, or a .npy of row numbers) and check every index.

    Indices must be whole numbers in ``0..n-1``: ``[1.5, 2.0]`` is refused, never truncated to ``[1, 2]``.
    """
    if not path.is_file():
        raise typer.BadParameter(f"{path}: no such file; give the JSON written by `worth select --out` or a .npy "
                                 "of row numbers.", param_hint=argname)
    meta: dict = {}
    if path.suffix == ".json":
        try:
            meta = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise typer.BadParameter(f"{path} is not valid JSON ({exc}); write it with `worth select --out`.",
                                     param_hint=argname) from None
        if not isinstance(meta, dict) or "indices" not in meta:
            raise typer.BadParameter(f"{path} has no 'indices' list; a selection JSON from `worth select --out` "
                                     "has one.", param_hint=argname)
        raw = meta["indices"]
        if not isinstance(raw, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
            bad = next((i for i in raw if not isinstance(i, int) or isinstance(i, bool)), raw) \
                if isinstance(raw, list) else raw
            raise typer.BadParameter(f"{path}: indices must be whole row numbers; found {bad!r}.", param_hint=argname)
        idx = np.asarray(raw, dtype=np.int64)
    elif path.suffix == ".npy":
        arr = _read_npy(path)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise typer.BadParameter(f"{path} holds {arr.dtype} of shape {arr.shape}; give a 1-D array of integer "
                                     "row numbers.", param_hint=argname)
        idx = arr.astype(np.int64)
    else:
        raise typer.BadParameter(f"{path}: give a .json selection or a .npy of row numbers.", param_hint=argname)
    if idx.size == 0:
        raise typer.BadParameter(f"{path} selects no rows.", param_hint=argname)
    out = (idx < 0) | (idx >= n)
    if out.any():
        raise typer.BadParameter(f"{path}: indices {idx[out][:5].tolist()} are outside 0..{n - 1} of the input's "
                                 f"{n} rows; was the selection made on another input?", param_hint=argname)
    params = meta.get("params")
    return SelectionFile(idx, meta.get("objective"), params if isinstance(params, dict) else None,
                         meta.get("normalize") if isinstance(meta.get("normalize"), bool) else None)


def check_output_path(path: Path | None, argname: str = "--out") -> Path | None:
    """Refuse, before a run, an output path that cannot be written: a missing folder, a folder, a read-only file
    or filesystem. Writes nothing that stays (a probe file is created in the folder and removed)."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder; give a file name inside it, e.g. {path / 'selection.json'}.",
                                 param_hint=argname)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise typer.BadParameter(f"folder {parent} does not exist; create it first (mkdir -p {parent}).",
                                 param_hint=argname)
    try:
        if path.exists():
            with open(path, "a"):
                pass
        else:
            with tempfile.NamedTemporaryFile(dir=parent, prefix=".worth-probe-"):
                pass
    except OSError as exc:
        raise typer.BadParameter(f"{path} cannot be written ({exc.strerror or exc}); choose a writable place.",
                                 param_hint=argname) from None
    return path
