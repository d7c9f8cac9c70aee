"""A tracking store that cannot work (issue 21 §2): a damaged or full SQLite file, a server that does not answer.

Before: "internal error DatabaseError … report it", the file not named; a dead server 250 s of retries, then an
internal error. After: the resolver's probe (:func:`tasks.track.check_tracking_uri`) refuses it in the
launching process in seconds, and what fails later (the disk filling up mid-run) is the same one line
(:class:`tasks.track.TrackingStoreError`, a ``ValueError``: exit 2). The CLI's side is in the catalogue
(``tests/test_bad_inputs.py``: a damaged file, a dead server by flag and by ``MLFLOW_TRACKING_URI``).

The full disk is a real one: a 2 MiB tmpfs in a mount namespace of its own (``unshare -rm``), skipped where
the kernel does not allow one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from tasks import track
from tests.helpers import ROOT


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def tracked(tmp_path, no_env):
    """A real MLflow SQLite file with an experiment and a run in it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = track.Tracker.open(uri, "worth-check")
    tracker.finish(tracker.start("k", "run", params={"a": 1}))
    return tmp_path / "mlflow.db"


def _damage(db, how):
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2] if how == "truncated" else os.urandom(len(data)))


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_a_damaged_sqlite_file_is_named_before_and_while_tracking(tracked, how):
    uri = f"sqlite:///{tracked}"
    assert track.check_tracking_uri(uri) == uri  # the good file passes
    _damage(tracked, how)
    with pytest.raises(track.TrackingStoreError, match=rf"tracking database {tracked} is damaged .*move it aside"):
        track.pick_tracking_uri(uri, None, check=True)
    # the client says the same when it meets the damage itself (no probe first)
    with pytest.raises(track.TrackingStoreError, match=rf"tracking database {tracked} is damaged"):
        track.Tracker.open(uri, "worth-check").runs_by_key()


def test_a_folder_and_an_empty_file_as_the_tracking_database(tmp_path, no_env):
    with pytest.raises(track.TrackingStoreError, match="is a folder"):
        track.check_tracking_uri(f"sqlite:///{tmp_path}")
    (tmp_path / "new.db").touch()  # SQLite makes an empty file a new database: fine
    assert track.check_tracking_uri(f"sqlite:///{tmp_path / 'new.db'}")


def test_a_dead_tracking_server_is_found_in_seconds(no_env):
    from infra.processes import free_ports

    t0 = time.monotonic()
    with pytest.raises(track.TrackingStoreError, match=r"tracking server http://127.0.0.1:\d+ \(from --tracking-uri\)"
                       r" does not answer .*worth services up"):
        track.resolve_tracking_uri("pool.zarr", f"http://127.0.0.1:{free_ports(1)[0]}", check=True)
    assert time.monotonic() - t0 < 3


def test_a_server_that_accepts_but_never_answers_is_refused_after_the_probe_timeout(no_env):
    with socket.socket() as silent:  # listens (the connection is accepted by the kernel) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        t0 = time.monotonic()
        with pytest.raises(track.TrackingStoreError, match="does not answer"):
            track.check_tracking_uri(f"http://127.0.0.1:{silent.getsockname()[1]}", "MLFLOW_TRACKING_URI")
        assert time.monotonic() - t0 < track.PROBE_TIMEOUT + 3


_FULL_DISK = textwrap.dedent("""
    import os, shutil, sys
    from tasks import track
    disk, tmp = sys.argv[1], sys.argv[2]
    shutil.copy(os.path.join(tmp, "mlflow.db"), os.path.join(disk, "mlflow.db"))
    fd = os.open(os.path.join(disk, "filler"), os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last byte
        while True:
            os.write(fd, bytes(65536))
    except OSError:
        os.close(fd)
    uri = "sqlite:///" + os.path.join(disk, "mlflow.db")
    try:
        track.check_tracking_uri(uri)
    except track.TrackingStoreError as exc:
        print("probe:", exc)
    tracker = track.Tracker.open(uri, "worth-check")  # reads only: works on a full disk
    try:
        for i in range(100):
            tracker.start(f"k{i}", "run", params={f"p{j}": "v" * 200 for j in range(50)})
    except track.TrackingStoreError as exc:
        print("while tracking:", exc)
""")


def _in_a_full_disk(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``python -c script DISK ARGS`` with DISK a fresh 2 MiB tmpfs of a mount namespace of its own."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    disk = "/mnt"
    shell = f'mount -t tmpfs -o size=2m worth-full {disk} && exec "$0" "$@"'
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=2m worth-full {disk}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace with a tmpfs here: {probe.stderr.strip()}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(["unshare", "-rm", "sh", "-c", shell, sys.executable, "-c", script, disk, *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_a_full_disk_is_named_by_the_probe_and_while_tracking(tracked):
    res = _in_a_full_disk(_FULL_DISK, str(tracked.parent))
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("probe: tracking database /mnt/mlflow.db (from --tracking-uri) is full"), lines
    assert lines[1].startswith("while tracking: tracking database /mnt/mlflow.db is full"), lines
    assert "free space" in lines[1]
    assert "Traceback" not in res.stderr  # MLflow's own logged copy of the error is dropped


def test_study_on_a_full_disk_is_one_line_and_exit_2(tracked, digits_store):
    """Through the CLI: the launcher's probe refuses it before the study selects, trains or tracks anything."""
    script = _FULL_DISK.split("    uri = ")[0] + textwrap.dedent("""
        from flows.cli.main import main
        sys.argv = ["worth", "study", "--store", sys.argv[3], "--quick", "--runner", "inline",
                    "--tracking-uri", "sqlite:///" + os.path.join(disk, "mlflow.db"), "--out", os.path.join(tmp, "o")]
        main()
    """)
    res = _in_a_full_disk(script, str(tracked.parent), digits_store)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: tracking database /mnt/mlflow.db"), lines
    assert "is full" in lines[0] and "free space" in lines[0]
    assert not os.path.exists(tracked.parent / "o")


@pytest.mark.parametrize("uri,words", [
    ("foo://bar", "has a scheme 'foo' that no MLflow store serves"),
    ("mlruns", "is a plain path, MLflow's file store"),
    ("file:///tmp/mlruns", "is a plain path, MLflow's file store"),
])
def test_a_tracking_uri_mlflow_cannot_serve_is_named_before_anything_starts(no_env, monkeypatch, uri, words):
    """Before: the night ran to its end, then "internal error UnsupportedModelRegistryStoreURIException" (or
    MLflow's file-store refusal) — the study said the URI needed an artifact location."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(track.TrackingStoreError, match=rf"tracking URI '{uri}' \(from --tracking-uri\) {words}"):
        track.resolve_tracking_uri("pool.zarr", uri, check=True)


@pytest.mark.parametrize("uri", ["postgresql://u@127.0.0.1/db", "postgresql+psycopg2://u@127.0.0.1/db",
                                 "databricks", "databricks://profile", "mysql://u@127.0.0.1/db"])
def test_tracking_uris_mlflow_serves_are_left_to_it(no_env, uri):
    assert track.check_tracking_uri(uri) == uri


def test_a_file_store_is_allowed_where_mlflow_allows_it(no_env, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert track.check_tracking_uri("mlruns") == "mlruns"
