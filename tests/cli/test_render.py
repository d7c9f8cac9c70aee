"""flows/cli/render.py: numbers rounded for people, long class lists summarised, tables that a pipe reads whole."""

from __future__ import annotations

import re

import numpy as np
import pytest

from flows.cli import render


@pytest.mark.parametrize("x, want", [
    (0.0123456789, "0.01235"), (12.3456, "12.35"), (13.338512, "13.34"), (999.96, "1000"), (1234.5, "1,234"),
    (-1234567.8, "-1,234,568"), (0, "0"), (-0.0, "0"), (1e-7, "1e-07"), (None, "-"), (float("nan"), "-"),
    (float("inf"), "-"), ("x", "-"), (True, "-"),
])
def test_gains_and_values_keep_four_significant_digits(x, want):
    assert render.number(x) == want


@pytest.mark.parametrize("x, want", [(0.91234, "91.2%"), (1.0, "100.0%"), (0.0, "0.0%"), (0.99951, "100.0%"),
                                     (None, "-")])
def test_accuracies_are_percentages(x, want):
    assert render.accuracy(x) == want


@pytest.mark.parametrize("x, want", [(0.0809, "+8.1 pp"), (-0.0123, "-1.2 pp"), (-0.0004, "+0.0 pp"),
                                     (0.0, "+0.0 pp"), (None, "-")])
def test_accuracy_changes_are_signed_percentage_points(x, want):
    assert render.accuracy_delta(x) == want


@pytest.mark.parametrize("x, want", [(0.5, "+0.5"), (-0.25, "-0.25"), (1234.4, "+1,234"), (None, "-")])
def test_signed(x, want):
    assert render.signed(x) == want


def test_a_thousand_classes_are_one_short_line():
    rng = np.random.default_rng(0)
    counts = {str(i): int(v) for i, v in enumerate(rng.integers(13, 1300, 1000))}
    counts["0"], counts["999"] = 12, 1300
    counts.update({str(i): 1281 for i in range(1, 601)})  # most classes: the median
    line = render.class_summary(counts, [f"class-{i}" for i in range(1000)])
    assert line == "1,000 classes, 12–1,300 rows each (median 1,281)"
    assert render.class_summary({**counts, "-1": 5000}).endswith("; 5,000 unlabelled")


@pytest.mark.parametrize("counts, classes, want", [
    ({0: 178, 1: 182}, ["zero", "one"], "zero: 178, one: 182"),
    ({"0": 3, "1": 1500}, None, "0: 3, 1: 1,500"),
    ({0: 1, -1: 2}, ["a"], "a: 1; 2 unlabelled"),
    ({-1: 7}, None, "none; 7 unlabelled"),
    ({}, None, "none"),
    ({i: 50 for i in range(13)}, None, "13 classes, 50 rows each"),
    ({i: 10 + i for i in range(14)}, None, "14 classes, 10–23 rows each (median 16.5)"),
])
def test_class_lists(counts, classes, want):
    assert render.class_summary(counts, classes) == want


def _summary(n_classes: int) -> dict:
    return {"url": "/data/imagenet.zarr", "n": 1_281_167, "dim": 512, "dtype": "float16", "normalize": True,
            "encoder": {"name": "open_clip:ViT-B-32", "version": "2", "params": {"pretrained": "laion2b"}},
            "source": {"spec": "hf:imagenet-1k", "kind": "images"}, "chunk_rows": 16384, "chunks": 79,
            "chunks_complete": 79, "classes": [f"c{i}" for i in range(n_classes)],
            "class_counts": {str(i): 732 + i for i in range(n_classes)}, "split_counts": {"train": 1_281_167},
            "bytes_stored": 3 * 2**30}


def test_the_store_summary_of_a_1000_class_store():
    out = render.text(render.store_summary(_summary(1000), rows=1000, seconds=4.0))
    lines = out.splitlines()
    assert lines[0] == "Embedding store /data/imagenet.zarr"
    assert re.search(r"^per class +1,000 classes, 732–1,731 rows each \(median 1,231\.5\)$", out, re.M)
    assert re.search(r"^classes +1,000$", out, re.M) and re.search(r"^items \(n\) +1,281,167$", out, re.M)
    assert re.search(r"^embedded this run +1,000 items in 4\.0 s, 250 items/s$", out, re.M)
    assert "c999" not in out and "|" not in out  # no raw markdown, no class list
    assert max(len(line) for line in lines) < 100


def test_show_to_a_pipe_is_unwrapped_and_has_no_trailing_blanks(capsys):
    rows = [{"name": "x" * 70, "version": 1, "regime": "fixed", "objective": "facility-location", "k": 128117,
             "value": 1234.56789, "created": "2026-12-04T23:00:00+00:00"}]
    title = " ".join(["a title longer than the table is wide"] * 4)
    render.show(render.selections_table(rows, title=title))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == title  # the title on one line, not wrapped to the table's width
    assert lines[-1].split() == ["x" * 70, "v1", "fixed", "facility-location", "128,117", "1,235", "2026-12-04",
                                 "23:00"]
    assert all(line == line.rstrip() for line in lines) and len(lines) == 4


def _night(n_classes: int, n_kept: int, n_added: int) -> dict:
    names = [f"class-{c}" for c in range(n_classes)]
    ids = [f"item-{i:05d}" for i in range(n_kept + n_added)]
    classes = [names[i % n_classes] for i in range(len(ids))]
    record = {"version": 2, "previous": 1, "ids": ids, "classes": classes, "class_names": names,
              "added": ids[n_kept:], "objective": "facility-location", "value": 634.39712, "accuracy": 0.83198,
              "store_rows": 5000, "test_set": {"n": 1369},
              "objective_choice": {"why": "auto: no study of this pool; facility-location, the fallback"},
              "metrics": {"candidates": 3629, "delta_accuracy": 0.06775, "previous_accuracy": 0.76423}}
    return {"noop": False, "record": record}


@pytest.mark.parametrize("n_classes, n_added, listed, summary", [
    (10, 40, 40, "per class: class-0: 8, class-1: 8, class-2: 8, class-3: 8, class-4: 8, class-5: 8, class-6: 8, "
                 "class-7: 8, class-8: 8, class-9: 8"),
    (1000, 1500, render.LIST_ADDITIONS, "per class: 1,000 classes, 1–2 rows each (median 2)"),
])
def test_a_night_reads_short_whatever_its_size(n_classes, n_added, listed, summary):
    """`worth curate` and `worth demo`: rounded numbers, the delta on the same held-out items, and a 1,000-class
    night of 1,500 additions on a few lines (the full lists are in the record and `worth nights --export`)."""
    result = _night(n_classes, 40, n_added)
    text = render.night_text(result)
    first, why, added, per_class = text.splitlines()
    assert first == (f"curated v0002: +{n_added:,} of 3,629 new training items, {40 + n_added:,} kept; "
                     "facility-location = 634.4; held-out accuracy 83.2% on 1,369 items (+6.8 pp against v0001's "
                     "set on the same held-out items: 76.4%)")
    assert why == "objective auto: no study of this pool; facility-location, the fallback"
    shown = added.removeprefix("added (id and class): ").split(", … and ")[0].split(", ")
    assert shown == [f"{i} ({c})" for i, c in zip(result["record"]["ids"][40:], result["record"]["classes"][40:])
                     ][:listed]
    assert added.endswith(f"… and {n_added - listed:,} more") == (n_added > listed)
    assert per_class == summary


def test_a_night_with_nothing_new_is_one_line():
    result = {"noop": True, "record": {**_night(10, 40, 0)["record"], "version": 2}}
    assert render.night_text(result) == "nothing new: the store has 5,000 rows, as curated in v0002 (40 items kept)"
