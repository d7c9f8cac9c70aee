"""One writing run per store: the lock refuses a live second writer at once and takes over a dead one's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from storage.lock import StoreLockedError, lock_path, writer_lock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOLD = ("import sys, time; from storage.lock import writer_lock\n"
        "with writer_lock(sys.argv[1], command='holder'):\n    print('held', flush=True); time.sleep(120)\n")


def _holder(url):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_file_names_its_owner_and_goes_away(tmp_path):
    url = str(tmp_path / "s.zarr")
    with writer_lock(url, command="test") as path:
        owner = json.load(open(path))
        assert path == lock_path(url) == url + ".lock"
        assert owner["pid"] == os.getpid() and owner["command"] == "test" and owner["host"]
        with writer_lock(url):  # re-entrant in one process (the CLI and the flow it runs)
            pass
        assert os.path.exists(path)
    assert not os.path.exists(lock_path(url))


@pytest.mark.slow
def test_a_live_writer_in_another_process_refuses_this_one(tmp_path):
    url = str(tmp_path / "s.zarr")
    proc = _holder(url)
    try:
        t0 = time.perf_counter()
        with pytest.raises(StoreLockedError, match=rf"being written by process {proc.pid} .*kill {proc.pid}"):
            with writer_lock(url):
                pass
        assert time.perf_counter() - t0 < 1.0  # at once, not after a wait
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_the_lock_of_a_killed_writer_is_taken_over(tmp_path):
    url = str(tmp_path / "s.zarr")
    proc = _holder(url)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert os.path.exists(lock_path(url))  # kill -9 leaves the file
    with pytest.warns(UserWarning, match=f"stale lock of process {proc.pid}"):
        with writer_lock(url):
            assert json.load(open(lock_path(url)))["pid"] == os.getpid()


def test_a_reused_pid_is_not_the_owner(tmp_path):
    """Same host, a live PID, but another process start time: the PID was reused, the lock is stale."""
    url = str(tmp_path / "s.zarr")
    owner = {"pid": os.getppid(), "host": os.uname().nodename, "proc_start": "1", "started": "then",
             "command": "gone", "token": "x"}
    if owner["host"] != __import__("socket").gethostname():
        pytest.skip("hostname and nodename differ here")
    open(lock_path(url), "w").write(json.dumps(owner))
    with pytest.warns(UserWarning, match="stale lock"):
        with writer_lock(url):
            pass


def test_a_lock_from_another_host_says_how_to_remove_it(tmp_path):
    url = str(tmp_path / "s.zarr")
    open(lock_path(url), "w").write(json.dumps({"pid": 1, "host": "elsewhere", "command": "worth embed"}))
    with pytest.raises(StoreLockedError, match=f"another host.*delete the lock file {lock_path(url)}"):
        with writer_lock(url):
            pass


@pytest.mark.slow
def test_two_embed_processes_the_second_fails_at_once_in_one_line(tmp_path):
    """Two real `worth embed` processes on one store: the second exits 1 with one line; the first completes.

    The first is paused (SIGSTOP) as soon as its lock exists, so it is certainly mid-run, alive, when the
    second starts, however loaded the machine; then it is resumed and must finish a sound store.
    """
    url = str(tmp_path / "s.zarr")
    cmd = [sys.executable, "-m", "flows.cli.main", "embed", "digits", "--store", url, "--runner", "inline",
           "--chunk-rows", "100", "--limit", "600", "-p", "dim=8"]
    env = {**os.environ, "PYTHONPATH": ROOT}
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(lock_path(url)) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGSTOP)
        assert first.poll() is None and os.path.exists(lock_path(url)), first.stderr.read()
        second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert second.returncode == 1 and len(lines) == 1, second.stderr
        assert lines[0].startswith("error: ") and f"being written by process {first.pid}" in lines[0]
        os.kill(first.pid, signal.SIGCONT)
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
            first.kill()
    from storage import EmbeddingStore

    st = EmbeddingStore.open(url)
    assert st.n == 600 and st.is_complete and st.verify().ok and not os.path.exists(lock_path(url))


def test_one_record_for_a_store_and_a_curated_folder(tmp_path):
    """Both locks are storage.lock's: the same fields, ``started`` an ISO time in both (it was a float in one)."""
    import datetime as dt

    from storage import curated

    url, folder = str(tmp_path / "s.zarr"), str(tmp_path / "s.zarr.curated")
    with writer_lock(url, command="worth embed"), curated.lock(folder, owner="flow run x") as held:
        store_rec = json.load(open(lock_path(url)))
        folder_rec = curated.read_lock(folder)
    assert set(store_rec) == set(folder_rec) - {"owner"} == {"pid", "host", "proc_start", "started", "command", "token"}
    assert folder_rec["command"] == folder_rec["owner"] == held["owner"] == "flow run x"
    for rec in (store_rec, folder_rec):
        assert dt.datetime.fromisoformat(rec["started"]).tzinfo is not None and rec["pid"] == os.getpid()
    assert not os.path.exists(lock_path(url)) and curated.read_lock(folder) is None


@pytest.mark.parametrize("kind", ["store", "curated"])
def test_both_locks_refuse_another_hosts_lock_and_say_how_to_remove_it(tmp_path, kind):
    from storage import curated

    url, folder = str(tmp_path / "s.zarr"), str(tmp_path / "c")
    path = lock_path(url) if kind == "store" else os.path.join(folder, curated.LOCK)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").write(json.dumps({"pid": 1, "host": "elsewhere", "command": "worth", "token": "t"}))
    error = StoreLockedError if kind == "store" else curated.CurationLocked
    with pytest.raises(error, match=f"delete .*{os.path.basename(path)}"):
        with (writer_lock(url) if kind == "store" else curated.lock(folder)):
            pass
    assert json.load(open(path))["host"] == "elsewhere"  # a lock that is not ours is never removed


def test_a_relative_store_path_is_locked_in_the_working_directory(tmp_path, monkeypatch):
    # `worth embed digits --store pool.zarr`: the lock's folder is '' after os.path.split, which is the cwd
    monkeypatch.chdir(tmp_path)
    with writer_lock("pool.zarr", command="test") as path:
        assert path == "pool.zarr.lock" and json.load(open(tmp_path / "pool.zarr.lock"))["command"] == "test"
    assert not (tmp_path / "pool.zarr.lock").exists()
