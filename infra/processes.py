"""Long-running local processes with a pid file and a log each: start, find, check, stop (children included).

:mod:`infra.services` uses these to run the Prefect, MLflow and Dask servers; nothing here knows about them.

Why it works the way it does:

* Each process starts in a session of its own (``start_new_session=True``), so it outlives the command that
  started it and ``down`` can signal its whole process group: Uvicorn, Dask nannies and worker processes are
  children of the recorded PID.
* A PID alone is not an identity (PIDs are reused): the pid file's process counts as ours only if its start
  time matches the one recorded when it was launched (``NAME.pid`` holds the PID, ``NAME.start`` the start
  time). A pid file without a matching process is *stale*.
* Every process gets ``WORTH_SERVICES_DIR=<state dir>`` in its environment and passes it on to its children,
  so :func:`tagged_processes` finds even a child that left its process group; ``down`` stops those too.
* A service can be *half-dead*: its recorded process killed (``kill -9``) while a child it started — MLflow's
  uvicorn worker, a Dask nanny — keeps running and serving the port. Such a child is still in the process group
  (and session) the recorded PID led, and carries the tag: :attr:`Recorded.remnants` lists them, so ``status``
  shows the service as half-dead and ``up``/``down`` stop the group before anything else.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

TAG = "WORTH_SERVICES_DIR"
"""Environment variable set in every process started here, to the state directory's absolute path."""


class ServiceError(RuntimeError):
    """A service cannot start or be reached; the message says which and what to do."""


class BadArgument(ServiceError, ValueError):
    """An argument that cannot work (busy port, unwritable directory ...), found before anything starts."""


@dataclass(frozen=True)
class Recorded:
    """What a state directory holds about one process: its pid file, log and whether the process is ours."""

    name: str
    pid: int | None
    alive: bool
    pid_file: Path
    log: Path
    remnants: tuple[int, ...] = ()
    """PIDs still running in the dead recorded process's group or session, with this state directory's tag."""

    @property
    def stale(self) -> bool:
        """A pid file whose process is gone (or whose PID now belongs to another process)."""
        return self.pid is not None and not self.alive

    @property
    def half_dead(self) -> bool:
        """The recorded process is gone but processes it started still run (and may hold its port)."""
        return self.stale and bool(self.remnants)

    def remnant_processes(self) -> list[psutil.Process]:
        out = []
        for pid in self.remnants:
            try:
                out.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        return out


def pid_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.pid"


def log_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.log"


def _start_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.start"


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def recorded(state_dir: Path, name: str) -> Recorded:
    """Read ``NAME.pid``: the PID and whether that process is still the one that was started."""
    path = pid_file(state_dir, name)
    pid = None
    alive = False
    try:
        pid = int(path.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        pid = None
    if pid is not None:
        try:
            proc = psutil.Process(pid)
            started = float(_start_file(state_dir, name).read_text())
            alive = _running(proc) and abs(proc.create_time() - started) < 1.0
        except (psutil.NoSuchProcess, FileNotFoundError, ValueError):
            alive = False
    left = tuple(p.pid for p in remnants(state_dir, pid)) if pid is not None and not alive else ()
    return Recorded(name, pid, alive, path, log_file(state_dir, name), left)


def remnants(state_dir: Path, leader: int) -> list[psutil.Process]:
    """Running processes of the process group or session that ``leader`` led (``spawn`` starts each service as
    a session leader) that carry ``state_dir``'s tag: what a killed service left running. The tag keeps a
    reused PID's unrelated group out."""
    want = f"{state_dir.resolve()}"
    found = []
    for proc in psutil.process_iter():
        if proc.pid in (leader, os.getpid()):
            continue
        try:
            if leader not in (os.getpgid(proc.pid), os.getsid(proc.pid)):
                continue
            if proc.environ().get(TAG) == want and _running(proc):
                found.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def spawn(state_dir: Path, name: str, argv: Sequence[str], env: dict[str, str]) -> psutil.Process:
    """Start ``argv`` in a new session, its output appended to ``NAME.log``; write ``NAME.pid``.

    The working directory is the state directory, so anything a server writes relative to it (MLflow's
    ``mlruns``, Dask's scratch space) stays there.
    """
    log = log_file(state_dir, name)
    env = {**env, TAG: str(state_dir.resolve())}
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        out.flush()
        popen = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=state_dir, env=env,
            start_new_session=True,
        )
    proc = psutil.Process(popen.pid)
    _start_file(state_dir, name).write_text(repr(proc.create_time()))
    pid_file(state_dir, name).write_text(f"{popen.pid}\n")
    return proc


def tagged_processes(state_dir: Path) -> list[psutil.Process]:
    """Every running process whose environment carries this state directory's tag (our services and children)."""
    return processes_with_env(TAG, f"{state_dir.resolve()}")


def processes_with_env(name: str, value: str) -> list[psutil.Process]:
    """Every running process (but this one) whose environment has ``name=value``: a process and everything it
    started, however far they wandered from its process group (environments are inherited)."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(name) == value and _running(proc):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def family(pid: int) -> list[psutil.Process]:
    """The process ``pid`` and all its descendants (those running now)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@dataclass(frozen=True)
class Stopped:
    """How processes went: seconds from SIGTERM until each was gone (by PID), and the PIDs that needed SIGKILL."""

    seconds: dict[int, float]
    killed: frozenset[int]


def stop(procs: Sequence[psutil.Process], grace: float = 10.0) -> Stopped:
    """SIGTERM the processes and their process groups together, wait up to ``grace`` seconds, SIGKILL the rest.

    All are signalled at once, so stopping several services takes as long as the slowest, not the sum.
    Children of the calling process are reaped (no zombies left behind).
    """
    t0 = time.monotonic()
    procs = [p for p in procs if _running(p)]
    seconds: dict[int, float] = {}
    killed: set[int] = set()
    groups = set()
    for proc in procs:
        try:
            pgid = os.getpgid(proc.pid)
        except ProcessLookupError:
            continue
        if pgid != os.getpgrp():  # never signal our own group
            groups.add(pgid)

    def gone(proc: psutil.Process) -> None:
        seconds[proc.pid] = time.monotonic() - t0

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in procs:
            try:
                proc.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        left = _wait_gone(procs, grace if sig == signal.SIGTERM else 5.0, gone)
        if sig == signal.SIGTERM:
            killed = {p.pid for p in left}
        if not left:
            break
        procs = left
    return Stopped(seconds, frozenset(killed))


def _wait_gone(procs: Sequence[psutil.Process], timeout: float, gone: Callable[[psutil.Process], None]):
    """Poll until every process has exited (a zombie counts as exited: its parent may be another program, whose
    job reaping it is; our own children are reaped here). Returns those still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    left = list(procs)
    while left:
        still = []
        for proc in left:
            try:
                os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:  # not our child
                pass
            if _running(proc):
                still.append(proc)
            else:
                gone(proc)
        left = still
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return left


def forget(state_dir: Path, name: str) -> None:
    """Remove ``NAME.pid`` (and its start-time file); the log stays."""
    for path in (pid_file(state_dir, name), _start_file(state_dir, name)):
        path.unlink(missing_ok=True)


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 right now (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_free(port: int) -> bool:
    """Whether ``port`` can be bound on 127.0.0.1 (``SO_REUSEADDR`` as servers set it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_ok(url: str, timeout: float = 2.0) -> bytes | None:
    """The body of a ``GET url`` that answered 200, else None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback URLs we built)
            return resp.read() if resp.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why nothing answers HTTP at ``url`` (connection refused, timed out, no such host ...), or None when
    something does — whatever its status code: a server that says 404 or 401 is up."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 (a URL the user configured)
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as exc:
        reason = exc.reason
        return getattr(reason, "strerror", None) or str(reason)
    except (OSError, ValueError) as exc:  # a timeout while reading, a malformed URL
        return str(exc) or type(exc).__name__


def wait_until(
    check: Callable[[], bool], proc: psutil.Process, what: str, log: Path, timeout: float, poll: float = 0.3
) -> float:
    """Poll ``check()`` until it is true; returns the seconds waited.

    Raises :class:`ServiceError` naming the log when ``proc`` exits first or ``timeout`` passes.
    """
    t0 = time.monotonic()
    while True:
        if check():
            return time.monotonic() - t0
        if not _running(proc):
            raise ServiceError(f"{what} exited while starting: see {log}")
        if time.monotonic() - t0 > timeout:
            raise ServiceError(f"{what} not ready after {timeout:.0f} s: see {log}")
        time.sleep(poll)
