"""How Dask clusters start, and the Prefect task runner that runs a flow's tasks on one.

Flows never create clusters: a launcher picks a :class:`ClusterSpec`, turns it into a task runner with
:func:`task_runner`, and binds it with ``flow.with_options(task_runner=...)``. The same flow then runs on a
LocalCluster on a laptop, on ``dask_cuda.LocalCUDACluster`` (one worker per GPU), or on a real scheduler.

The ephemeral-Prefect trap (docs/stack.md): without ``PREFECT_API_URL``, every Dask worker process starts its own
temporary Prefect server. :func:`prefect_api` starts exactly one in the launching process (or uses the one
configured) and exports its address *before* the cluster starts, so workers inherit it. Scripts that start
worker processes need the ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class ClusterSpec:
    """Which Dask cluster to run on.

    Attributes
    ----------
    kind : {"local", "cuda", "address"}
        ``local``: ``distributed.LocalCluster`` (processes, CPU); ``cuda``: ``dask_cuda.LocalCUDACluster``,
        one worker per visible GPU; ``address``: an existing scheduler (``tcp://host:8786``).
    n_workers : int or None
        Worker processes (local: default one per core; cuda: default one per GPU).
    threads_per_worker : int
        Threads per worker. One suits torch work: each worker already uses its core(s) fully.
    address : str or None
        Scheduler address for ``kind="address"``.
    extra : dict
        Further keyword arguments for the cluster class (``memory_limit``, ``CUDA_VISIBLE_DEVICES`` ...).
    """

    kind: Literal["local", "cuda", "address"] = "local"
    n_workers: int | None = None
    threads_per_worker: int = 1
    address: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("local", "cuda", "address"):
            raise ValueError(f"kind={self.kind!r}: choose 'local', 'cuda' or 'address'")
        if self.kind == "address" and not self.address:
            raise ValueError("kind='address' needs address='tcp://host:port' of a running Dask scheduler")
        if self.n_workers is not None and self.n_workers < 1:
            raise ValueError(f"n_workers={self.n_workers}: must be at least 1 (or None for the default)")
        if self.threads_per_worker < 1:
            raise ValueError(f"threads_per_worker={self.threads_per_worker}: must be at least 1")


def local_spec(n_workers: int | None = None, threads_per_worker: int = 1, **extra: Any) -> ClusterSpec:
    """A CPU LocalCluster of worker processes (default: one per core, one thread each)."""
    return ClusterSpec("local", n_workers, threads_per_worker, None, extra)


def cuda_spec(n_workers: int | None = None, **extra: Any) -> ClusterSpec:
    """A dask-cuda LocalCUDACluster: one worker per GPU (``pip install worth[gpu]``)."""
    return ClusterSpec("cuda", n_workers, 1, None, extra)


def scheduler_spec(address: str) -> ClusterSpec:
    """An existing Dask scheduler, e.g. ``tcp://10.0.0.5:8786`` of a multi-machine cluster."""
    return ClusterSpec("address", None, 1, address, {})


#: Seconds a Dask scheduler named by address has to accept a connection before a flow starts on it.
SCHEDULER_PROBE_TIMEOUT = 5.0


def check_scheduler(spec: ClusterSpec | None) -> None:
    """Refuse a scheduler address nothing answers at, in seconds, before any server or flow starts (Dask's
    client would wait 30 s and fail mid-launch with a traceback). Local clusters are not probed: they are made.

    Raises
    ------
    ValueError
        Naming the address (``--scheduler``) and the fix.
    """
    if spec is None or spec.kind != "address":
        return
    import socket
    from urllib.parse import urlparse

    address = spec.address if "://" in spec.address else f"tcp://{spec.address}"
    parsed = urlparse(address)
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host = port = None
    if not host or port is None or parsed.scheme not in ("tcp", "tls", "ws", "wss", "ucx"):
        raise ValueError(f"scheduler={spec.address!r} is not a Dask scheduler address: give tcp://HOST:PORT "
                         "(e.g. tcp://127.0.0.1:8786), or leave --scheduler out for a local cluster")
    try:
        socket.create_connection((host, port), timeout=SCHEDULER_PROBE_TIMEOUT).close()
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise ValueError(f"scheduler={spec.address!r}: no Dask scheduler answers there ({why}): start it (`dask "
                         "scheduler`, with workers), or leave --scheduler out for a local cluster") from None


def gpu_count() -> int:
    """Visible NVIDIA GPUs, via NVML when present (no torch or CuPy import)."""
    if shutil.which("nvidia-smi") is None and not os.path.exists("/dev/nvidiactl"):
        return 0
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0


def default_spec(address: str | None = None, n_workers: int | None = None) -> ClusterSpec:
    """The scheduler at ``address`` if given, else LocalCUDACluster when a GPU and dask-cuda exist, else LocalCluster."""
    if address:
        return scheduler_spec(address)
    if gpu_count() > 0:
        try:
            import dask_cuda  # noqa: F401

            return cuda_spec(n_workers)
        except ImportError:
            pass
    return local_spec(n_workers)


#: Dask's own ``distributed.nanny.pre-spawn-environ`` value of ``MALLOC_TRIM_THRESHOLD_`` (distributed.yaml).
DASK_MALLOC_TRIM = 65536
#: glibc malloc settings for the worker processes a local cluster spawns (see :func:`tune_worker_malloc`).
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": 256 << 20, "MALLOC_MMAP_THRESHOLD_": 32 << 20}


def tune_worker_malloc() -> bool:
    """Give the worker processes of clusters started from this process glibc settings that suit numeric work.

    Dask's nanny spawns each worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand freed memory back to the OS
    at once). Setting it switches off glibc's sliding mmap threshold, so every block above 128 KiB — a
    gradient, an optimiser's temporaries, a 784 × 784 eigenvector rotation — is a fresh ``mmap`` whose pages
    fault on first touch and go back on ``free``. Measured on this project's work (``bench/README.md``, "Worker
    malloc"): a third of a worker's CPU time was the kernel's, ~180,000 page faults a second. With trimming
    past 256 MiB and blocks under 32 MiB served from the heap, the same training or greedy path faults ~30×
    less (large blocks are still mapped and returned at once). A value configured by the user (anything but
    Dask's default) is kept, and so is one set in this process's environment (the nanny takes
    ``os.environ``'s value over the config's). Sets ``dask.config`` for this process (the nanny reads it when
    it spawns); returns whether it changed anything. A remote scheduler's workers take their own config: set the same
    two variables in their ``distributed.nanny.pre-spawn-environ`` (docs/operate.md)."""
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    trim = env.get("MALLOC_TRIM_THRESHOLD_", DASK_MALLOC_TRIM)
    if str(trim) != str(DASK_MALLOC_TRIM) or "MALLOC_MMAP_THRESHOLD_" in env:
        return False  # the user's own setting wins
    dask.config.set({"distributed.nanny.pre-spawn-environ": {**env, **WORKER_MALLOC}})
    return True


def cluster_kwargs(spec: ClusterSpec) -> tuple[str | None, dict[str, Any]]:
    """``(cluster_class, kwargs)`` for a spec (``(None, {})`` for an existing scheduler); for a local or CUDA
    cluster, also :func:`tune_worker_malloc` (the workers it will spawn)."""
    if spec.kind == "address":
        return None, {}
    tune_worker_malloc()
    kw: dict[str, Any] = {"dashboard_address": None, **spec.extra}
    if spec.n_workers is not None:
        kw["n_workers"] = spec.n_workers
    if spec.kind == "local":
        kw.setdefault("processes", True)
        kw["threads_per_worker"] = spec.threads_per_worker
        return "distributed.LocalCluster", kw
    return "dask_cuda.LocalCUDACluster", kw


def task_runner(spec: ClusterSpec):
    """A ``prefect_dask.DaskTaskRunner`` that starts (or connects to) the cluster of ``spec`` when a flow runs."""
    from prefect_dask import DaskTaskRunner

    if spec.kind == "address":
        return DaskTaskRunner(address=spec.address)
    cls, kw = cluster_kwargs(spec)
    return DaskTaskRunner(cluster_class=cls, cluster_kwargs=kw)


#: Set (to its API URL) while :func:`prefect_api` serves a temporary server: links to it die with the command.
TEMPORARY_API_ENV = "WORTH_TEMPORARY_PREFECT_API"
#: Where :func:`prefect_reopen`'s command serves a temporary server's records again (Prefect's default address).
REOPEN_ADDRESS = ("127.0.0.1", 4200)


def prefect_reopen() -> dict[str, str] | None:
    """How to see this process's flow runs once its temporary Prefect server (:func:`prefect_api`) has stopped:
    ``{"command", "ui"}`` — ``prefect server start`` on the same database (``PREFECT_HOME``), and the UI's root
    address there (a flow run's page is ``UI/runs/flow-run/ID``). None while the API is not a temporary one (a
    real server or Prefect Cloud: its own links work)."""
    from prefect.settings import PREFECT_API_URL, get_current_settings

    temporary = os.environ.get(TEMPORARY_API_ENV)
    if not temporary or (os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()) != temporary:
        return None
    host, port = REOPEN_ADDRESS
    home = get_current_settings().home
    return {"command": f"PREFECT_HOME={home} prefect server start --host {host} --port {port}",
            "ui": f"http://{host}:{port}"}


@contextlib.contextmanager
def prefect_api(timeout: int = 120) -> Iterator[str]:
    """Make sure one Prefect API serves this process and the workers it starts; yields its URL.

    Uses ``PREFECT_API_URL`` when set (a real ``prefect server start`` or Prefect Cloud). Otherwise starts one
    local server (loopback, analytics off) in a subprocess, exports its address for child processes, and stops
    it on exit — instead of one temporary server per Dask worker. While it serves, :data:`TEMPORARY_API_ENV`
    names it, so links are made for the server that reopens its records (:func:`prefect_reopen`).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()
    if url:
        yield url
        return
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    server = _server_class()()
    server.start(timeout=timeout)
    os.environ["PREFECT_API_URL"] = os.environ[TEMPORARY_API_ENV] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            try:
                yield server.api_url
            finally:
                _drain_prefect_workers()
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        os.environ.pop(TEMPORARY_API_ENV, None)
        server.stop()


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child, before exec
    """Ask Linux to send SIGTERM to this process when the thread that started it dies (kill -9 included)."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _server_class():
    """Prefect's temporary-server class, started so that it cannot outlive the launcher.

    ``SubprocessASGIServer`` runs uvicorn in a child process and stops it on a clean exit; a launcher killed
    with SIGKILL never gets to, and each kill left a ≈230 MB server running. On Linux the child is started with
    ``PR_SET_PDEATHSIG``: the kernel sends it SIGTERM when its parent dies, however it dies. (Elsewhere it
    behaves as Prefect's own.) A class of its own, with its own instance registry, so Prefect's singleton for
    its ephemeral mode is left alone.
    """
    import subprocess
    import sys

    from prefect.server.api.server import SubprocessASGIServer

    class OrphanFreeServer(SubprocessASGIServer):
        _instances: dict = {}

        def _run_uvicorn_command(self) -> subprocess.Popen:
            if not sys.platform.startswith("linux"):
                return super()._run_uvicorn_command()
            popen = subprocess.Popen

            def with_death_signal(*args, **kwargs):
                return popen(*args, preexec_fn=_die_with_parent, **kwargs)

            subprocess.Popen = with_death_signal
            try:
                return super()._run_uvicorn_command()
            finally:
                subprocess.Popen = popen

    return OrphanFreeServer


def _drain_prefect_workers() -> None:
    """Send buffered logs and events before the server goes (else they retry against a closed port at exit)."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        for call in (lambda: APILogWorker.instance().drain(), EventsWorker.drain_all):
            try:
                result = call()
                if inspect.isawaitable(result):
                    await result
            except RuntimeError:  # a worker that never started
                pass

    run_coro_as_sync(drain())


RUNNERS = ("dask", "threads", "inline")


def launch_target(runner: str, *, workers: int | None = None, scheduler: str | None = None,
                  cluster: ClusterSpec | None = None) -> dict[str, Any]:
    """Where a launcher runs a flow's tasks, by the name a user types (``--runner``).

    Returns the keyword arguments of a ``run_*`` launcher (``flows.embed.run_embed`` and its siblings):
    ``{"spec": ClusterSpec}`` for ``dask`` (``cluster`` when given — a deployment parameter, say — else the
    scheduler at ``scheduler``, else a LocalCluster of ``workers`` processes, or LocalCUDACluster where a GPU
    is), ``{"task_runner": ThreadPoolTaskRunner}`` for ``threads`` (``workers`` tasks at once, default one:
    torch and BLAS already use every core), and ``{}`` for ``inline`` (the flow's body in this process on
    :class:`flows.runtime.InlineRuntime`, no Prefect). A scheduler address nothing answers at is a ``ValueError``
    (:func:`check_scheduler`).
    """
    if runner not in RUNNERS:
        raise ValueError(f"runner={runner!r}: choose one of {', '.join(RUNNERS)}")
    if runner == "inline":
        return {}
    if runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return {"task_runner": ThreadPoolTaskRunner(max_workers=workers or 1)}
    spec = cluster or default_spec(scheduler, workers)
    check_scheduler(spec)  # a dead address refused here, before a command takes a lock or plans
    return {"spec": spec}


class ClusterOptions(BaseModel):
    """Where a deployed run's tasks run (a deployment parameter, so one flow serves a laptop and a cluster)."""

    model_config = ConfigDict(extra="forbid")

    runner: Literal["dask", "threads", "inline"] = Field(
        "threads", description="dask: a Dask cluster (LocalCluster, or the scheduler below); threads: tasks in "
        "the flow's process; inline: no tasks, every job in the flow's process one after another.")
    workers: int | None = Field(None, ge=1, description="Dask worker processes of a LocalCluster (default: one "
                                "per core), or tasks at once for threads.")
    scheduler: str | None = Field(None, description="Address of a running Dask scheduler (tcp://host:8786); "
                                  "runner=dask only.")

    def launch(self) -> dict[str, Any]:
        """The launcher keyword arguments of this choice (:func:`launch_target`)."""
        return launch_target(self.runner, workers=self.workers, scheduler=self.scheduler)
