"""A throwaway PostgreSQL server from Debian's binaries, for tests and trials of Prefect and MLflow on PostgreSQL.

:func:`local_postgres` runs ``initdb`` into a temporary data directory, starts ``postgres`` on a free loopback
port (``trust`` authentication, fsync off: data that may be lost), creates the databases asked for, yields a
:class:`Postgres` that builds their URLs, and removes everything on exit. PostgreSQL refuses to run as root,
so under root the data directory belongs to the ``postgres`` user (Debian's package creates it) and the
binaries run through ``runuser``.

Binaries: ``$WORTH_PG_BIN`` if set, else the newest ``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql``
package; ``infra/system-deps.sh`` installs it), else ``initdb`` on ``PATH``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.processes import free_ports

SYSTEM_USER = "postgres"


def postgres_bin() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None when PostgreSQL is not installed."""
    candidates = []
    if os.environ.get("WORTH_PG_BIN"):
        candidates.append(Path(os.environ["WORTH_PG_BIN"]))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versions, key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0, reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for path in candidates:
        if all((path / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return path
    return None


def why_unavailable() -> str | None:
    """Why :func:`local_postgres` cannot run here (a skip reason), or None when it can."""
    if postgres_bin() is None:
        return "PostgreSQL server binaries not found (Debian: apt-get install postgresql; or set WORTH_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            return "running as root without a 'postgres' user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root without runuser to switch to the 'postgres' user"
    return None


@dataclass(frozen=True)
class Postgres:
    """A running server: where it listens and who may connect (no password: trust on loopback)."""

    host: str
    port: int
    user: str
    data_dir: Path

    def url(self, database: str = "postgres", driver: str | None = None) -> str:
        """``postgresql[+driver]://user@host:port/database``: ``driver="asyncpg"`` for Prefect, none for MLflow."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{database}"


def _as_owner(argv: Sequence[str]) -> list[str]:
    return ["runuser", "-u", SYSTEM_USER, "--", *argv] if os.geteuid() == 0 else list(argv)


def _run(argv: Sequence[str], log: Path) -> None:
    with open(log, "ab") as out:
        done = subprocess.run(_as_owner(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): " + " | ".join(tail))


@contextmanager
def local_postgres(databases: Sequence[str] = ("worth",), port: int | None = None) -> Iterator[Postgres]:
    """Start a temporary PostgreSQL on 127.0.0.1 and create ``databases``; stop it and delete its data on exit.

    Raises RuntimeError (naming the tool and its last log lines) when the server cannot be set up; call
    :func:`why_unavailable` first to skip where it cannot run.
    """
    reason = why_unavailable()
    if reason:
        raise RuntimeError(reason)
    bin_dir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="worth-pg-"))
    data = root / "data"
    log = root / "postgres.log"
    user = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() != 0 else SYSTEM_USER
    port = port or free_ports(1)[0]
    if os.geteuid() == 0:
        shutil.chown(root, SYSTEM_USER)
        os.chmod(root, 0o755)
    log.touch()
    if os.geteuid() == 0:
        shutil.chown(log, SYSTEM_USER)
    started = False
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"], log)
        options = f"-h 127.0.0.1 -p {port} -k {root} -F -c max_connections=100"
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"], log)
        started = True
        for name in databases:
            _run([str(bin_dir / "createdb") if (bin_dir / "createdb").exists() else "createdb",
                  "-h", "127.0.0.1", "-p", str(port), "-U", user, name], log)
        yield Postgres("127.0.0.1", port, user, data)
    finally:
        if started:
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], log)
        shutil.rmtree(root, ignore_errors=True)
