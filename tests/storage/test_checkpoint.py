"""A checkpoint keeps finished work whole and merges it back, whatever jobs wrote it."""

import pytest

from storage.checkpoint import Checkpoint


def test_saved_batches_merge_back_by_key(tmp_path):
    ck = Checkpoint(tmp_path / "work")
    assert ck.load() == {}  # no folder yet: nothing done
    ck.save({"a": [1, 2], "b": 3.5})
    ck.save({"c": {"x": 1}})
    assert ck.load() == {"a": [1, 2], "b": 3.5, "c": {"x": 1}}
    assert ck.save({}) is None and len(list((tmp_path / "work").glob("*.json"))) == 2


def test_saving_the_same_work_again_replaces_its_file(tmp_path):
    ck = Checkpoint(tmp_path)
    first = ck.save({"a": 1})
    second = ck.save({"a": 2})
    assert first == second and ck.load() == {"a": 2}


@pytest.mark.parametrize("damage", [b"", b"{\"a\": [1, 2", b"[1, 2]", b"\xff\xfe"])
def test_a_damaged_file_is_named_and_skipped_the_rest_still_read(tmp_path, damage):
    ck = Checkpoint(tmp_path)
    ck.save({"kept": 1})
    bad = ck.save({"lost": 2})
    bad.write_bytes(damage)
    with pytest.warns(RuntimeWarning, match=str(bad)):
        assert ck.load() == {"kept": 1}


def test_a_killed_writer_leaves_nothing_a_reader_sees(tmp_path):
    ck = Checkpoint(tmp_path)
    ck.save({"kept": 1})
    (tmp_path / ".abc.json.1234.tmp").write_text('{"half": ')  # what a kill between write and rename leaves
    assert ck.load() == {"kept": 1}
    assert [p.name for p in tmp_path.glob("*.json")] != [] and len(list(tmp_path.glob("*.json"))) == 1
