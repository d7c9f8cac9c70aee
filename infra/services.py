"""Local services for the orchestrated stack: a Prefect server with a process worker, an MLflow server, a Dask
scheduler with workers — real processes on 127.0.0.1, one state directory for all of them.

``up(state_dir)`` starts what is not running and reuses what is; ``down(state_dir)`` stops everything it
started, children included; ``status(state_dir)`` reads the pid files. The state directory holds, per process,
``NAME.pid`` and ``NAME.log``, plus ``services.json`` with the addresses clients need (:func:`client_env`).

Facts behind the choices (measured, ``docs/stack.md``):

* ``prefect server start --port P`` alone leaves the UI calling port 4200: ``PREFECT_SERVER_API_HOST/PORT`` (and
  the UI's API URL) are set too. Analytics off, else the server makes a DNS lookup.
* MLflow: ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (else 8–10 processes, 26–45 s to start, and SIGTERM
  leaves ``huey_consumer`` children behind). Several processes opening a *fresh* SQLite store at once corrupt
  it, so the database is created by one process before the server starts.
* Everything binds to 127.0.0.1. On more than one machine, see ``docs/operate.md``.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from infra.processes import (
    BadArgument,
    ServiceError,
    family,
    forget,
    free_ports,
    http_ok,
    port_is_free,
    recorded,
    spawn,
    stop,
    tagged_processes,
    wait_until,
)

__all__ = [
    "GROUPS",
    "BadArgument",
    "Service",
    "ServiceError",
    "Services",
    "client_env",
    "default_state_dir",
    "down",
    "status",
    "up",
]

GROUPS: dict[str, tuple[str, ...]] = {
    "prefect": ("prefect-server", "prefect-worker"),
    "mlflow": ("mlflow-server",),
    "dask": ("dask-scheduler", "dask-workers"),
}
"""Each group (what ``--only`` names) and its processes, in start order."""

NAMES: tuple[str, ...] = tuple(name for names in GROUPS.values() for name in names)
STOP_PHASES: tuple[tuple[str, ...], ...] = (
    ("prefect-worker", "dask-workers"),
    ("mlflow-server", "dask-scheduler", "prefect-server"),
)
DEFAULT_POOL = "worth-local"
PSYCOPG2_PIN = "psycopg2-binary==2.9.13"
START_TIMEOUT = 180.0  # seconds; a fresh Prefect database took up to 27 s on a loaded 2-core box

QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}


@dataclass(frozen=True)
class Service:
    """One process of the stack, as ``up``/``status``/``down`` found or left it.

    Attributes
    ----------
    name : str
        ``prefect-server``, ``prefect-worker``, ``mlflow-server``, ``dask-scheduler`` or ``dask-workers``.
    pid : int or None
        The PID in ``NAME.pid`` (None: no pid file).
    alive : bool
        The recorded process runs (same PID *and* start time, so a reused PID does not count).
    url : str or None
        Where clients reach it (API URL, tracking URI, scheduler address); None for workers.
    log : pathlib.Path
        Its log file.
    action : str
        ``up``: ``started`` or ``reused``; ``down``: ``stopped``, ``killed`` (needed SIGKILL) or ``stale``
        (pid file of a dead process, removed); ``status``: ``running``, ``half-dead`` (the recorded process is
        gone, processes it started still run), ``stale`` or ``absent``.
    seconds : float or None
        ``up``: seconds from launch until it answered (health endpoint, registered worker); ``down``: seconds
        until it and its children were gone.
    remnants : tuple of int
        ``status``, action ``half-dead``: the PIDs the dead recorded process left running (its worker, which
        may still serve the port); ``up`` and ``down`` stop them.
    """

    name: str
    pid: int | None
    alive: bool
    url: str | None
    log: Path
    action: str
    seconds: float | None = None
    remnants: tuple[int, ...] = ()


@dataclass(frozen=True)
class Services:
    """What runs from one state directory: the services and the addresses recorded in ``services.json``."""

    state_dir: Path
    services: tuple[Service, ...]
    info: Mapping[str, dict] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"{name!r}: services here are {[s.name for s in self.services]}")

    def env(self) -> dict[str, str]:
        """The environment variables a client needs to use the running services (see :func:`client_env`)."""
        return _env_from(self.info, {s.name for s in self.services if s.alive})


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/worth/services``, else ``~/.local/state/worth/services``: one per user."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "worth" / "services"


# ---------------------------------------------------------------------------------------------------------------
# state directory


def _prepare(state_dir: str | os.PathLike | None) -> Path:
    path = Path(state_dir) if state_dir is not None else default_state_dir()
    path = path.expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BadArgument(
            f"--state-dir {path} is not a writable directory ({exc.strerror or exc}): pass another with --state-dir"
        ) from None
    return path


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One ``up``/``down`` at a time per state directory (a second one waits)."""
    with open(state_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_info(state_dir: Path) -> dict:
    try:
        return json.loads((state_dir / "services.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_info(state_dir: Path, info: dict) -> None:
    tmp = state_dir / "services.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    tmp.replace(state_dir / "services.json")


def _redact(url: str) -> str:
    """A database URL without its password (``services.json`` is not a secret store)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _env_from(info: Mapping[str, dict], alive: set[str]) -> dict[str, str]:
    env = {}
    if "prefect-server" in alive and "prefect" in info:
        env["PREFECT_API_URL"] = info["prefect"]["api_url"]
    if "mlflow-server" in alive and "mlflow" in info:
        env["MLFLOW_TRACKING_URI"] = info["mlflow"]["tracking_uri"]
    if "dask-scheduler" in alive and "dask" in info:
        env["DASK_SCHEDULER_ADDRESS"] = info["dask"]["address"]
    return env


# ---------------------------------------------------------------------------------------------------------------
# input checks (before anything starts)


def _groups(which: Iterable[str] | str | None) -> list[str]:
    if which is None:
        return list(GROUPS)
    if isinstance(which, str):
        which = [w for w in which.split(",") if w.strip()]
    chosen = [w.strip() for w in which]
    unknown = [w for w in chosen if w not in GROUPS]
    if unknown or not chosen:
        raise BadArgument(f"--only {','.join(chosen)!r}: choose among {','.join(GROUPS)} (comma-separated)")
    return [g for g in GROUPS if g in chosen]


def _prefect_db(url: str | None, state_dir: Path) -> str:
    if url is None:
        return f"sqlite+aiosqlite:///{state_dir / 'prefect' / 'prefect.db'}"
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        return "postgresql+asyncpg" + url[len(scheme):]
    if scheme in ("postgresql+asyncpg", "sqlite+aiosqlite"):
        return url
    raise BadArgument(
        f"--prefect-db {_redact(url)}: Prefect needs postgresql+asyncpg://USER:PASS@HOST:PORT/DB (or sqlite+aiosqlite:///PATH)"
    )


def _mlflow_db(url: str | None, state_dir: Path) -> str:
    if url is None:
        return f"sqlite:///{state_dir / 'mlflow.db'}"
    scheme = urlsplit(url).scheme
    if scheme.startswith("postgres"):
        if importlib.util.find_spec("psycopg2") is None:
            raise BadArgument(
                f"--mlflow-db {_redact(url)}: MLflow on PostgreSQL needs psycopg2 in this environment: "
                f"pip install {PSYCOPG2_PIN}"
            )
        return "postgresql" + url[len(scheme):] if scheme == "postgres" else url
    if scheme in ("sqlite", "mysql", "mysql+pymysql", "mssql"):
        return url
    raise BadArgument(f"--mlflow-db {_redact(url)}: use postgresql://USER:PASS@HOST:PORT/DB or sqlite:///PATH")


def _ports(state_dir: Path, groups: list[str], ports: Mapping[str, int] | None) -> dict[str, int]:
    """A port per group to start: the one asked for (checked free now) or a free one."""
    ports = dict(ports or {})
    unknown = set(ports) - set(GROUPS) - {"dask-dashboard"}
    if unknown:
        raise BadArgument(f"ports={sorted(unknown)}: keys are {sorted(GROUPS)} and 'dask-dashboard'")
    info = _read_info(state_dir)
    wanted = {g: ports.get(g) for g in groups}
    if "dask" in groups:
        wanted["dask-dashboard"] = ports.get("dask-dashboard")
    chosen: dict[str, int] = {}
    for key, port in wanted.items():
        group = "dask" if key == "dask-dashboard" else key
        head = GROUPS[group][0]
        if recorded(state_dir, head).alive:  # already running: keep its port
            running = info.get(group, {}).get("dashboard_port" if key == "dask-dashboard" else "port")
            if port and running and port != running:
                raise BadArgument(
                    f"--{group}-port {port}: {head} already runs on port {running} from {state_dir}; "
                    f"run `worth services down` first to move it"
                )
            if running:
                chosen[key] = running
            continue
        if port is not None:
            if not 0 < port < 65536:
                raise BadArgument(f"--{key}-port {port}: a TCP port is between 1 and 65535")
            if not port_is_free(port):
                raise BadArgument(f"--{key}-port {port}: the port is busy on 127.0.0.1; pick another or omit it")
            chosen[key] = port
            continue
        before = info.get(group, {}).get("dashboard_port" if key == "dask-dashboard" else "port")
        if before and port_is_free(before):  # a restart keeps the address clients were given
            chosen[key] = before
    missing = [k for k in wanted if k not in chosen]
    taken = set(chosen.values())
    pool = [p for p in free_ports(len(missing) + len(taken)) if p not in taken]
    chosen.update(zip(missing, pool))
    return chosen


# ---------------------------------------------------------------------------------------------------------------
# starting each service


def _base_env() -> dict[str, str]:
    """The caller's environment without its Prefect, MLflow and Dask settings (a test harness's
    ``PREFECT_API_URL`` or ``PREFECT_SERVER_UI_ENABLED=false`` must not leak into the servers), analytics off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "DASK_"))}
    env.update(QUIET_ENV)
    return env


def _prefect_env(state_dir: Path, port: int, database: str) -> dict[str, str]:
    api = f"http://127.0.0.1:{port}/api"
    return {
        **_base_env(),
        "PREFECT_HOME": str(state_dir / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_UI_API_URL": api,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_API_DATABASE_CONNECTION_URL": database,
    }


def _py(*args: str) -> list[str]:
    """Run a module of this interpreter's environment (its console scripts may not be on PATH)."""
    return [sys.executable, "-m", *args]


def _launch_prefect_server(state_dir: Path, port: int, database: str):
    (state_dir / "prefect").mkdir(exist_ok=True)
    argv = _py("prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port))
    return spawn(state_dir, "prefect-server", argv, _prefect_env(state_dir, port, database))


def _launch_prefect_worker(state_dir: Path, port: int, database: str, pool: str):
    # The worker creates the pool (type process, default job template) through the API when it is missing.
    argv = _py("prefect", "worker", "start", "--pool", pool, "--type", "process", "--name", f"{pool}-worker")
    return spawn(state_dir, "prefect-worker", argv, _prefect_env(state_dir, port, database))


def _prefect_worker_registered(api: str, pool: str) -> bool:
    """Whether the pool exists with type ``process`` and has a worker that sent a heartbeat."""
    import urllib.request

    body = http_ok(f"{api}/work_pools/{pool}")
    if body is None or json.loads(body).get("type") != "process":
        return False
    req = urllib.request.Request(
        f"{api}/work_pools/{pool}/workers/filter", data=b"{}", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=2.0) as resp:  # noqa: S310
            workers = json.loads(resp.read())
    except OSError:
        return False
    return any(w.get("status") == "ONLINE" or w.get("last_heartbeat_time") for w in workers)


MLFLOW_INIT = """
import sys
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
SqlAlchemyStore(sys.argv[1], sys.argv[2])
"""


def _mlflow_init(state_dir: Path, database: str) -> None:
    """Create a fresh SQLite store in one process before the server opens it (concurrent first use corrupts it)."""
    if not database.startswith("sqlite:///") or Path(database[len("sqlite:///"):]).exists():
        return
    log = state_dir / "mlflow-server.log"
    with open(log, "ab") as out:
        done = subprocess.run(
            [sys.executable, "-c", MLFLOW_INIT, database, str(state_dir / "mlartifacts")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=state_dir, env=_base_env(),
        )
    if done.returncode != 0:
        raise ServiceError(f"creating the MLflow database {database} failed: see {log}")


def _launch_mlflow(state_dir: Path, port: int, database: str):
    argv = _py(
        "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri", database,
        "--artifacts-destination", str(state_dir / "mlartifacts"), "--workers", "1",
    )
    env = {**_base_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return spawn(state_dir, "mlflow-server", argv, env)


def _launch_dask_scheduler(state_dir: Path, port: int, dashboard: int):
    argv = _py(
        "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
        "--dashboard-address", f"127.0.0.1:{dashboard}",
    )
    return spawn(state_dir, "dask-scheduler", argv, _base_env())


def _launch_dask_workers(state_dir: Path, address: str, n: int):
    (state_dir / "dask").mkdir(exist_ok=True)
    argv = _py(
        "dask", "worker", address, "--host", "127.0.0.1", "--nworkers", str(n), "--nthreads", "1",
        "--no-dashboard", "--local-directory", str(state_dir / "dask"),
    )
    return spawn(state_dir, "dask-workers", argv, _base_env())


def _dask_workers(dashboard_url: str) -> int:
    body = http_ok(f"{dashboard_url}/json/identity.json")
    return len(json.loads(body).get("workers", {})) if body else -1


# ---------------------------------------------------------------------------------------------------------------
# public API


def up(
    state_dir: str | os.PathLike | None = None,
    which: Iterable[str] | str | None = None,
    ports: Mapping[str, int] | None = None,
    *,
    dask_workers: int | None = None,
    prefect_db: str | None = None,
    mlflow_db: str | None = None,
    pool: str = DEFAULT_POOL,
    timeout: float = START_TIMEOUT,
) -> Services:
    """Start the services that are not running; reuse those that are (found through their pid files).

    A half-dead service (its recorded process killed, a child still running — MLflow's worker keeps serving the
    old port) is stopped first, its whole process group, and started afresh; a restarted service keeps the
    port it had when that port is free, so the addresses clients were given stay right.

    Parameters
    ----------
    state_dir : path, optional
        Where pid files, logs, databases and ``services.json`` live (default :func:`default_state_dir`).
    which : iterable of {"prefect", "mlflow", "dask"} or comma-separated str, optional
        Groups to bring up (default all).
    ports : mapping, optional
        ``{"prefect": P, "mlflow": P, "dask": P, "dask-dashboard": P}``; a port given must be free, the others
        are picked free on 127.0.0.1.
    dask_workers : int, optional
        Dask worker processes (one thread each); default one per core.
    prefect_db, mlflow_db : str, optional
        Database URLs (``postgresql://USER:PASS@HOST:PORT/DB``); default SQLite files in the state directory.
        MLflow on PostgreSQL needs ``psycopg2``.
    pool : str
        Name of the Prefect process work pool the worker serves.
    timeout : float
        Seconds each service may take to answer.

    Returns
    -------
    Services
        Each process with ``action`` ``started`` or ``reused`` and, if started, the seconds it took.

    Raises
    ------
    ServiceError
        Bad arguments (checked before anything starts), or a service that exits or does not answer in time
        (the message names its log). Services started by this call before the failure keep running;
        ``down`` stops them.
    """
    groups = _groups(which)
    if dask_workers is not None and dask_workers < 1:
        raise BadArgument(f"--dask-workers {dask_workers}: must be at least 1")
    n_dask = dask_workers or os.cpu_count() or 1
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", pool):
        raise BadArgument(f"--pool {pool!r}: use lowercase letters, digits and dashes")
    state = _prepare(state_dir)
    prefect_database = _prefect_db(prefect_db, state)
    mlflow_database = _mlflow_db(mlflow_db, state)
    with _locked(state):
        running = {name: recorded(state, name) for name in NAMES}
        for rec in running.values():  # stale pid files go first, so nothing reads them as running
            if rec.half_dead:  # what a killed service left running (its worker on the old port) goes with it
                stop(rec.remnant_processes())
            if rec.stale:
                forget(state, rec.name)
        port = _ports(state, groups, ports)
        info = _read_info(state)
        for server, client in (("prefect-server", "prefect-worker"), ("dask-scheduler", "dask-workers")):
            if not running[server].alive and running[client].alive:  # it serves a server that is gone
                stop(family(running[client].pid))
                forget(state, client)
        launched: dict[str, tuple] = {}  # name -> (process, t0)

        def launch(name: str, start) -> None:
            if recorded(state, name).alive:
                return
            t0 = time.monotonic()
            launched[name] = (start(), t0)

        if "prefect" in groups:
            if not running["prefect-server"].alive:
                info["prefect"] = {
                    "port": port["prefect"],
                    "api_url": f"http://127.0.0.1:{port['prefect']}/api",
                    "ui_url": f"http://127.0.0.1:{port['prefect']}",
                    "pool": pool,
                    "database": _redact(prefect_database),
                }
            launch("prefect-server", lambda: _launch_prefect_server(state, port["prefect"], prefect_database))
        if "dask" in groups:
            if not running["dask-scheduler"].alive:
                info["dask"] = {
                    "port": port["dask"],
                    "address": f"tcp://127.0.0.1:{port['dask']}",
                    "dashboard_port": port["dask-dashboard"],
                    "dashboard_url": f"http://127.0.0.1:{port['dask-dashboard']}",
                }
            launch("dask-scheduler", lambda: _launch_dask_scheduler(state, port["dask"], port["dask-dashboard"]))
        if "mlflow" in groups and not running["mlflow-server"].alive:
            info["mlflow"] = {
                "port": port["mlflow"],
                "tracking_uri": f"http://127.0.0.1:{port['mlflow']}",
                "database": _redact(mlflow_database),
                "artifacts": str(state / "mlartifacts"),
            }
            t0 = time.monotonic()
            _mlflow_init(state, mlflow_database)  # while the Prefect server and the Dask scheduler boot
            launched["mlflow-server"] = (_launch_mlflow(state, port["mlflow"], mlflow_database), t0)
        _write_info(state, info)

        seconds: dict[str, float] = {}

        def settle(name: str, check) -> None:
            if name in launched:
                proc, t0 = launched[name]
                wait_until(check, proc, name, state / f"{name}.log", timeout)
                seconds[name] = time.monotonic() - t0

        if "dask" in groups:
            dash = info["dask"]["dashboard_url"]
            settle("dask-scheduler", lambda: http_ok(f"{dash}/health") == b"ok")
            if not recorded(state, "dask-workers").alive:
                launch("dask-workers", lambda: _launch_dask_workers(state, info["dask"]["address"], n_dask))
                info["dask"]["workers"] = n_dask
                _write_info(state, info)
        if "mlflow" in groups:
            uri = info["mlflow"]["tracking_uri"]
            settle("mlflow-server", lambda: http_ok(f"{uri}/health") is not None)
        if "prefect" in groups:
            api = info["prefect"]["api_url"]
            settle("prefect-server", lambda: http_ok(f"{api}/health") is not None)
            launch(
                "prefect-worker",
                lambda: _launch_prefect_worker(state, info["prefect"]["port"], prefect_database, info["prefect"]["pool"]),
            )
            settle("prefect-worker", lambda: _prefect_worker_registered(api, info["prefect"]["pool"]))
        if "dask" in groups:
            n = info["dask"].get("workers", n_dask)
            settle("dask-workers", lambda: _dask_workers(info["dask"]["dashboard_url"]) >= n)

        names = [name for g in groups for name in GROUPS[g]]
        out = []
        for name in names:
            rec = recorded(state, name)
            action = "started" if name in launched else "reused"
            out.append(Service(name, rec.pid, rec.alive, _url(info, name), rec.log, action, seconds.get(name)))
        return Services(state, tuple(out), info)


def _url(info: Mapping[str, dict], name: str) -> str | None:
    return {
        "prefect-server": info.get("prefect", {}).get("api_url"),
        "mlflow-server": info.get("mlflow", {}).get("tracking_uri"),
        "dask-scheduler": info.get("dask", {}).get("address"),
    }.get(name)


def status(state_dir: str | os.PathLike | None = None) -> Services:
    """What runs from ``state_dir``: each process with a pid file, ``running``, ``half-dead`` (the recorded process
    gone, processes it started still running: :attr:`Service.remnants`) or ``stale`` (all gone)."""
    state = Path(state_dir).expanduser().absolute() if state_dir is not None else default_state_dir()
    info = _read_info(state) if state.is_dir() else {}
    out = []
    for name in NAMES:
        rec = recorded(state, name)
        if rec.pid is None:
            continue
        action = "running" if rec.alive else "half-dead" if rec.half_dead else "stale"
        out.append(Service(name, rec.pid, rec.alive, _url(info, name), rec.log, action, remnants=rec.remnants))
    return Services(state, tuple(out), info)


def down(state_dir: str | os.PathLike | None = None, grace: float = 10.0) -> Services:
    """Stop every service of ``state_dir`` with its children: SIGTERM to the process group, then SIGKILL after
    ``grace`` seconds. Removes the pid files (stale ones too) and leaves no tagged process behind.

    Returns each process with ``action`` ``stopped``, ``killed`` (did not stop on SIGTERM) or ``stale``; a
    last pseudo-entry ``strays`` appears when processes that had left their group were found and stopped.
    """
    state = Path(state_dir).expanduser().absolute() if state_dir is not None else default_state_dir()
    if not state.is_dir():
        return Services(state, ())
    with _locked(state):
        info = _read_info(state)
        out = []
        for phase in STOP_PHASES:  # workers first (so they do not retry a server that is gone), then servers
            recs = [rec for rec in (recorded(state, name) for name in phase) if rec.pid is not None]
            families = {rec.name: family(rec.pid) if rec.alive else rec.remnant_processes()
                        for rec in recs if rec.alive or rec.half_dead}
            went = stop([p for fam in families.values() for p in fam], grace)
            for rec in recs:
                if rec.name in families:
                    action = "killed" if any(p.pid in went.killed for p in families[rec.name]) else "stopped"
                    took = max((went.seconds.get(p.pid, 0.0) for p in families[rec.name]), default=0.0)
                else:
                    action, took = "stale", None
                forget(state, rec.name)
                out.append(Service(rec.name, rec.pid, False, _url(info, rec.name), rec.log, action, took))
        strays = tagged_processes(state)
        if strays:
            stop(strays, grace)
            out.append(Service("strays", None, False, None, state, f"stopped {len(strays)}"))
        return Services(state, tuple(out), info)


def client_env(state_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """``PREFECT_API_URL``, ``MLFLOW_TRACKING_URI`` and ``DASK_SCHEDULER_ADDRESS`` of the running services.

    ``DASK_SCHEDULER_ADDRESS`` is read by Dask's config, so a bare ``distributed.Client()`` connects to the
    scheduler. Set ``PREFECT_API_URL`` before ``import prefect`` (it is read once at import).
    """
    return status(state_dir).env()
