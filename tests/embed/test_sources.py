"""Sources on small real data: built-in sets, an image folder, text/csv/parquet files, arrays."""

from __future__ import annotations

import os

import numpy as np
import pytest

from worth.data.sources import FASHION_MNIST_DIR, encode_labels, from_arrays, load_source, resolve_source

FASHION = os.environ.get("WORTH_FASHION_MNIST_DIR", FASHION_MNIST_DIR)


@pytest.mark.parametrize("name,n,shape,per_class", [("digits", 1797, (8, 8), None), ("mnist5k", 5000, (28, 28), 500)])
def test_builtin_image_sets(name, n, shape, per_class):
    src = load_source(name)
    assert (len(src), src.kind, src.classes) == (n, "images", tuple(str(i) for i in range(10)))
    assert len(set(src.ids.tolist())) == n and set(src.split.tolist()) == {"train"}
    counts = np.bincount(src.labels, minlength=10)
    assert counts.sum() == n and (counts > 0).all()
    if per_class:
        assert (counts == per_class).all()
    x = src.take([0, n - 1, 5])
    assert x.shape == (3, *shape) and x.dtype == np.uint8 and x.max() > 100  # real images, uint8 scale


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_the_debian_package():
    src = load_source("fashion-mnist")
    assert len(src) == 70_000 and src.classes[9] == "Ankle boot"
    assert (src.split == "train").sum() == 60_000 and (src.split == "test").sum() == 10_000
    assert (np.bincount(src.labels[src.split == "train"]) == 6000).all()
    assert (np.bincount(src.labels[src.split == "test"]) == 1000).all()
    x = src.take([0, 69_999])
    assert x.shape == (2, 28, 28) and x.dtype == np.uint8
    assert src.ids[60_000] == "test-00000"


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
    with pytest.raises(ValueError, match="apt-get install -y dataset-fashion-mnist"):
        load_source("fashion-mnist", root=str(tmp_path))


def _write_folder(root, images, labels, names):
    from PIL import Image

    paths = []
    for i, (img, lab) in enumerate(zip(images, labels)):
        d = root / names[lab]
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"img{i:03d}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


def test_image_folder(tmp_path):
    digits = load_source("digits")
    imgs = digits.take(np.arange(12))
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    _write_folder(tmp_path, imgs, digits.labels[:12], names)
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8) + 7).save(tmp_path / "unlabelled.png")
    src = load_source(str(tmp_path))
    assert len(src) == 13 and src.kind == "images" and src.classes == tuple(sorted(set(names[:10])))
    i = src.ids.tolist().index("three/img003.png")
    assert src.classes[src.labels[i]] == "three"
    np.testing.assert_array_equal(src.take([i])[0], imgs[3])  # PNG round trip is lossless
    assert src.labels[src.ids.tolist().index("unlabelled.png")] == -1
    mixed = src.take([i, src.ids.tolist().index("unlabelled.png")])  # grey and RGB: a list, not a stack
    assert isinstance(mixed, list) and mixed[1].shape == (8, 8, 3)
    assert load_source(str(tmp_path), mode="RGB").take([i]).shape == (1, 8, 8, 3)


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_source(str(tmp_path / "empty"))
    (tmp_path / "bad" / "cls").mkdir(parents=True)
    (tmp_path / "bad" / "cls" / "x.png").write_bytes(b"not an image")
    src = load_source(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match=r"x\.png.*cannot be read"):
        src.take([0])


def test_text_file_lines(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("the cat sat\n\na dog ran\nbirds fly\n", encoding="utf-8")
    src = load_source(str(p))
    assert src.kind == "text" and len(src) == 3 and (src.labels == -1).all()
    assert src.take([2, 0]) == ["birds fly", "the cat sat"]
    assert src.ids.tolist() == ["line-0000001", "line-0000003", "line-0000004"]  # line numbers: stable ids


def test_text_file_with_label_column(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("pos\tgreat film\nneg\tdull\npos\tloved it\n", encoding="utf-8")
    src = load_source(str(p), label_column=0)
    assert src.classes == ("neg", "pos") and src.labels.tolist() == [1, 0, 1]
    assert src.take([1]) == ["dull"]


def test_csv_with_columns(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("id,text,label,split\na1,hello there,3,train\nb2,good bye,1,test\n", encoding="utf-8")
    src = load_source(str(p), label_column="label", id_column="id", split_column="split")
    assert src.ids.tolist() == ["a1", "b2"] and src.labels.tolist() == [3, 1] and src.classes is None
    assert src.split.tolist() == ["train", "test"] and src.take([0]) == ["hello there"]
    with pytest.raises(ValueError, match=r"label_column='lbl' is not a column.*\['id', 'text', 'label', 'split'\]"):
        load_source(str(p), label_column="lbl")


def test_mixed_label_column_is_refused(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label\na,cat\nb,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="label_column: the label column mixes class numbers .* and class names"):
        load_source(str(p), label_column="label")


def test_parquet_text_and_vectors(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"text": ["a b", "c d", "e f"], "label": ["x", "y", "x"], "vec": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]})
    pq.write_table(table, tmp_path / "t.parquet")
    src = load_source(str(tmp_path / "t.parquet"), label_column="label")
    assert src.kind == "text" and src.take([1]) == ["c d"] and src.labels.tolist() == [0, 1, 0]
    vec = load_source(str(tmp_path / "t.parquet"), vector_column="vec")
    assert vec.kind == "vectors"
    np.testing.assert_array_equal(vec.take([2]), [[5.0, 6.0]])
    mixed = pa.table({"text": ["a", "b"], "label": pa.array(["1", "one"])})
    pq.write_table(mixed, tmp_path / "m.parquet")
    with pytest.raises(ValueError, match="mixes"):
        load_source(str(tmp_path / "m.parquet"), label_column="label")


def test_numpy_files(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", x=x, y=np.array([0, 1, 1, 0]), ids=np.array(list("abcd")))
    a = load_source(str(tmp_path / "x.npy"))
    b = load_source(str(tmp_path / "x.npz"))
    assert a.kind == b.kind == "vectors" and b.ids.tolist() == list("abcd") and b.labels.tolist() == [0, 1, 1, 0]
    np.testing.assert_array_equal(b.take([3, 0]), x[[3, 0]])
    np.savez(tmp_path / "bad.npz", z=x)
    with pytest.raises(ValueError, match="needs an array named x"):
        load_source(str(tmp_path / "bad.npz"))


@pytest.mark.parametrize("content,suffix", [("", ".txt"), ("\n\n", ".txt"), ("text,label\n", ".csv")])
def test_empty_source_is_refused(tmp_path, content, suffix):
    p = tmp_path / f"empty{suffix}"
    p.write_text(content)
    with pytest.raises(ValueError, match="has no items"):
        load_source(str(p))


@pytest.mark.parametrize("spec,match", [("imagenet", "not a known source"), ("", "give a source name"),
                                        ("hf:", None)])
def test_unknown_source(tmp_path, spec, match):
    if spec == "hf:":
        try:
            import datasets  # noqa: F401
        except ImportError:
            with pytest.raises(ValueError, match="pip install datasets"):
                load_source("hf:mnist")
            return
        pytest.skip("datasets is installed")
    with pytest.raises(ValueError, match=match):
        load_source(spec)
    (tmp_path / "f.xyz").write_text("x")
    with pytest.raises(ValueError, match="cannot read files of type '.xyz'"):
        load_source(str(tmp_path / "f.xyz"))


def test_hugging_face_local_file(tmp_path):
    pytest.importorskip("datasets")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": [0, 1, 0]}), tmp_path / "d.parquet")
    src = load_source("hf:parquet", data_files=str(tmp_path / "d.parquet"))
    assert len(src) == 3 and src.kind == "text" and src.labels.tolist() == [0, 1, 0] and src.take([1]) == ["b"]


@pytest.mark.parametrize("values,labels,classes", [
    ([3, 1, None], [3, 1, -1], None),
    (["3", "1", ""], [3, 1, -1], None),
    ([2.0, float("nan")], [2, -1], None),
    (["dog", "cat", None, "dog"], [1, 0, -1, 1], ("cat", "dog")),
])
def test_encode_labels(values, labels, classes):
    got, names = encode_labels(values)
    assert got.tolist() == labels and names == classes


@pytest.mark.parametrize("values,match", [([1, "cat"], "mixes"), ([0.5], "not a class number"), ([True], "boolean"),
                                          ([-3], "negative")])
def test_encode_labels_refuses(values, match):
    with pytest.raises(ValueError, match=match):
        encode_labels(values, argname="label_column")


def test_head_fingerprint_and_ref():
    src = load_source("digits")
    small = src.head(100)
    assert len(small) == 100 and small.fingerprint() != src.fingerprint()
    assert small.fingerprint() == load_source("digits", limit=100).fingerprint()
    again = resolve_source(small.ref())
    assert len(again) == 100 and again.fingerprint() == small.fingerprint()
    mem = from_arrays(np.ones((3, 2)))
    assert mem.ref() is mem  # in-memory sources travel as themselves
    with pytest.raises(ValueError, match="limit=0"):
        src.head(0)


@pytest.mark.parametrize("save", ["npy", "savez", "savez_compressed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint8])
def test_numpy_file_rows_are_memory_mapped_where_stored_plainly(tmp_path, save, dtype):
    """A .npy and an uncompressed .npz member are memory-mapped (no whole-pool load in every process); a
    compressed one is loaded. Same rows, same fingerprint as the whole-array hash either way."""
    import hashlib

    x = (np.random.default_rng(0).random((37, 6)) * 200).astype(dtype)
    path = tmp_path / ("x.npy" if save == "npy" else "x.npz")
    if save == "npy":
        np.save(path, x)
    else:
        getattr(np, save)(path, y=np.arange(37) % 3, x=x)
    src = load_source(str(path))
    data = src.loader.data
    assert isinstance(data.base, np.memmap) == (save != "savez_compressed")  # np.asarray: a view of the map
    np.testing.assert_array_equal(src.take(np.arange(37)[::-1]), x[::-1])
    assert src.content_hint == hashlib.sha256(x.tobytes()).digest()


def test_array_digest_by_blocks_is_the_whole_array_hash():
    import hashlib

    from worth.data.sources import array_digest

    x = np.random.default_rng(1).standard_normal((101, 7)).astype(np.float32)
    for block in (1, 28, 28 * 10, 1 << 20):
        assert array_digest(x, block_bytes=block) == hashlib.sha256(x.tobytes()).digest()
    assert array_digest(x[:0]) == hashlib.sha256(b"").digest()
