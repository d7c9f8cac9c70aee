"""MLflow for the study and the night: where runs are tracked, where artifacts go, resumable runs by key.

This module and ``infra/`` are the only ones that import MLflow, and only the flow process calls it: workers
return small dicts and the flow logs them as they arrive. Facts behind the choices (docs/stack.md, measured here):

* **Tracking URI** (one rule, :func:`pick_tracking_uri`): ``--tracking-uri`` when given, else
  ``MLFLOW_TRACKING_URI`` (MLflow's own convention), else ``mlflow.db`` (SQLite) in the *project folder*, the
  folder holding the store (:func:`project_folder`): the study of ``demo/digits.zarr`` (:func:`resolve_tracking_uri`)
  and its nights (:func:`default_tracking_uri`; the curated versions sit beside the store) both land in
  ``demo/mlflow.db``, one ``mlflow ui`` for both. A study started before this rule keeps the database it began
  with (``<store>.mlflow/mlflow.db`` when that file exists), so its resume still finds its runs. :meth:`Tracker.open` creates
  the database and the experiment in the flow process *before* any worker starts: three processes opening one
  fresh SQLite store at once corrupted it (a migration race).
* **Artifacts** (one rule, :func:`resolve_artifact_location`, applied by :func:`ensure_experiment` to the
  study's experiments and the night's alike) go where the experiment says, set explicitly at creation: an
  ``artifacts/<experiment>`` folder beside a SQLite file (``<store>.mlflow/artifacts/<experiment>`` for the
  study's default store); MLflow's default is ``./mlruns`` under whatever the working directory happens to be,
  so another database without a location is refused. A tracking server (``http://...``) keeps its own
  ``--artifacts-destination``.
* **Resume without duplicates.** Every run carries a deterministic ``worth.key`` tag. :meth:`Tracker.runs_by_key`
  reads every run of the experiment once (deleted ones included, so a key is never given to a second run).
  A FINISHED run is reused as it is; any other (a process killed inside a run leaves it RUNNING for
  good) is reopened by its id and logged into again.

* **A tracking store that cannot work is refused before the flow starts** (:func:`check_tracking_uri`, called by
  the resolver with ``check=True`` from each flow's plan, in the launching process): a SQLite file that is not a
  database or is damaged, a disk with no room for it, a tracking server that does not answer within
  :data:`PROBE_TIMEOUT` seconds (MLflow's own client retries a dead server for about 250 s). What fails later —
  the disk filling up mid-run — is reported the same way: every call of the tracking client goes through
  :class:`TrackingClient`, which turns the database's or the connection's error into
  :class:`TrackingStoreError` naming the file or server and the fix.

The client API (:class:`mlflow.tracking.MlflowClient`) is used throughout instead of ``mlflow.start_run``: no
global active-run state, so the flow can hold one parent and many children open at once.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.curate import NIGHTLY_EXPERIMENT
from storage.ref import StoreRef
from tasks._task import worth_task

KEY_TAG = "worth.key"
PARENT_TAG = "mlflow.parentRunId"
FINISHED = "FINISHED"


def is_local(url: str) -> bool:
    """Whether ``url`` is a local path (or ``file://``), beside which files can be written."""
    return StoreRef(url).is_local


def beside_store(store: str, suffix: str) -> Path:
    """``<store><suffix>``, an absolute path beside a local store (``.mlflow``: its tracking database and
    artifacts; ``.study``: its study reports)."""
    path = Path(StoreRef(store).path).resolve()
    return path.with_name(path.name + suffix)


def pick_tracking_uri(explicit: str | None, folder: str | os.PathLike | None, *, why_none: str = "",
                      check: bool = False) -> str:
    """The one rule: ``explicit``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<folder>/mlflow.db``; with
    ``check``, the store is probed first (:func:`check_tracking_uri`).

    Raises
    ------
    ValueError
        With neither and no ``folder`` (a remote store has no folder beside it): ``why_none`` says why.
    TrackingStoreError
        With ``check``: the store named cannot work (its file or server, and the fix).
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if explicit:
        uri, origin = explicit, "--tracking-uri"
    elif env:
        uri, origin = env, "MLFLOW_TRACKING_URI"
    elif folder is None:
        raise ValueError(f"{why_none}no tracking database can sit beside it: pass --tracking-uri (e.g. "
                         "http://mlflow-host:5000 or sqlite:////abs/path/mlflow.db) or set MLFLOW_TRACKING_URI.")
    else:
        uri, origin = f"sqlite:///{Path(os.path.abspath(folder)) / 'mlflow.db'}", "the default tracking database"
    if check:
        check_tracking_uri(uri, origin)
    return uri


def project_folder(store: str) -> Path:
    """The folder holding a local store: where its project's default tracking database ``mlflow.db`` lives,
    shared by the store's study, its nights and every other store of that folder."""
    return Path(StoreRef(store).path).resolve().parent


def resolve_tracking_uri(store: str, explicit: str | None = None, *, check: bool = False) -> str:
    """The tracking URI of a study on ``store`` (:func:`pick_tracking_uri`; the default folder the project's,
    :func:`project_folder`, or ``<store>.mlflow`` where a study of the older rule already keeps its runs).

    Raises
    ------
    ValueError
        For a remote store (``s3://...``) with neither: a SQLite file cannot live beside it.
    """
    folder = None
    if is_local(store):
        legacy = beside_store(store, ".mlflow")
        folder = legacy if (legacy / "mlflow.db").exists() else project_folder(store)
    return pick_tracking_uri(explicit, folder, why_none=f"store={store!r} is remote, so ", check=check)


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


# -- a tracking store that cannot work ----------------------------------------------------------------------------
PROBE_TIMEOUT = 5.0
"""Seconds a tracking server has to answer the probe before a flow starts."""
MIN_FREE_BYTES = 16 << 20
"""Free bytes below which the disk of a SQLite tracking file counts as full (runs, metrics and the artifacts
beside it need room)."""
QUICK_CHECK_BYTES = 1 << 30
"""SQLite files up to this size get SQLite's ``quick_check`` before a flow starts; larger ones a schema read."""


class TrackingStoreError(ValueError):
    """The tracking store cannot be used: a damaged or full SQLite file, a server that does not answer. The
    message names the file or server, where the URI came from, and the fix (bad input: exit 2)."""


def _where(uri: str) -> str:
    db = _sqlite_path(uri)
    return f"tracking database {db}" if db is not None else f"tracking server {uri}"


def _sqlite_problem(db: Path, text: str) -> str | None:
    """The one-line diagnosis of SQLite's error ``text`` on ``db`` (None: not a SQLite error we know)."""
    low = text.lower()
    if "full" in low:
        return (f"tracking database {db} is full (SQLite: {text}): free space on the disk holding it, or pass "
                "--tracking-uri sqlite:////PATH/ON/ANOTHER/DISK/mlflow.db")
    if any(w in low for w in ("not a database", "malformed", "encrypted", "corrupt")):
        return (f"tracking database {db} is damaged (SQLite: {text}): move it aside or delete it (a new one is made, "
                "and earlier runs are not resumed), restore it from a backup, or pass another --tracking-uri")
    if "locked" in low or "busy" in low:
        return (f"tracking database {db} is locked by another process (SQLite: {text}): wait for it to finish, "
                "or pass another --tracking-uri")
    if "readonly" in low or "read-only" in low or "unable to open" in low or "disk i/o" in low:
        return (f"tracking database {db} cannot be written (SQLite: {text}): check the file's permissions and "
                "disk, or pass another --tracking-uri")
    return None


def _free_bytes(path: Path) -> int | None:
    import shutil

    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def check_tracking_uri(uri: str, origin: str = "--tracking-uri") -> str:
    """Refuse a tracking store that cannot work, before anything starts; return ``uri``.

    * ``sqlite:///PATH``: a folder at ``PATH``, a file that SQLite cannot read as a database (garbage, a
      truncated copy: SQLite's ``quick_check``), a file that cannot be written, or a disk with less than
      :data:`MIN_FREE_BYTES` free. A missing file is fine: it is created.
    * ``http(s)://``: the server must answer an HTTP request (any status) within :data:`PROBE_TIMEOUT` seconds.
    * a folder or ``file://`` URI (MLflow's file store, refused by MLflow unless ``MLFLOW_ALLOW_FILE_STORE``),
      or a scheme MLflow has no store for (:func:`_check_scheme`).
    * anything else (PostgreSQL, Databricks): left to MLflow.

    Raises
    ------
    TrackingStoreError
        Naming the file or server, ``origin`` (where the URI came from) and the fix.
    """
    db = _sqlite_path(uri)
    if db is not None:
        _check_sqlite(db.expanduser(), origin)
    elif uri.startswith(("http://", "https://")):
        from infra.processes import unreachable

        why = unreachable(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT)
        if why is not None:
            raise TrackingStoreError(
                f"tracking server {uri} (from {origin}) does not answer ({why}): start it (`worth services up "
                "--only mlflow`, then `eval \"$(worth services env)\"`), or point --tracking-uri or "
                "MLFLOW_TRACKING_URI at a running one")
    else:
        _check_scheme(uri, origin)
    return uri


#: Schemes of the tracking stores MLflow itself serves (a ``+driver`` suffix allowed: ``postgresql+psycopg2``)
MLFLOW_SCHEMES = frozenset({"sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc",
                            "uc"})


def _check_scheme(uri: str, origin: str) -> None:
    """A tracking URI that is neither SQLite nor a server: a folder (MLflow's file store), or a scheme no store
    of MLflow's (or of a plugin's) serves, found here rather than by MLflow once the flow has run."""
    from urllib.parse import urlparse

    if uri.split(":", 1)[0].lower() in MLFLOW_SCHEMES:  # "databricks", "databricks://profile"
        return
    scheme = urlparse(uri).scheme.split("+", 1)[0].lower()
    fix = ("pass --tracking-uri sqlite:////ABS/PATH/mlflow.db (a file, made when missing) or the http://HOST:PORT "
           "of an MLflow server (`worth services up --only mlflow`)")
    if scheme in ("", "file"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1"):
            return
        raise TrackingStoreError(f"tracking URI {uri!r} (from {origin}) is a plain path, MLflow's file store "
                                 f"(./mlruns), which MLflow refuses: {fix}, or set MLFLOW_ALLOW_FILE_STORE=true to "
                                 "use the folder")
    try:  # a plugin's scheme (its store registered with MLflow's registry)
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry as registry
    except ImportError:  # no registry to ask: left to MLflow
        return
    try:
        registry.get_store_builder(uri)
    except Exception:  # MLflow's "unsupported URI" (its exception type differs between stores and versions)
        raise TrackingStoreError(f"tracking URI {uri!r} (from {origin}) has a scheme {scheme!r} that no MLflow "
                                 f"store serves: {fix}") from None


def _check_sqlite(db: Path, origin: str) -> None:
    import sqlite3

    if db.is_dir():
        raise TrackingStoreError(f"tracking database {db} (from {origin}) is a folder: give the path of a file "
                                 "(sqlite:////PATH/mlflow.db)")
    free = _free_bytes(db)
    if free is not None and free < MIN_FREE_BYTES:
        raise TrackingStoreError(
            f"tracking database {db} (from {origin}) is full: its disk has {free:,} bytes free, less than "
            f"{MIN_FREE_BYTES >> 20} MiB: free space on that disk, or pass --tracking-uri "
            "sqlite:////PATH/ON/ANOTHER/DISK/mlflow.db")
    if not db.exists() or db.stat().st_size == 0:  # SQLite makes an empty file a new database
        return
    if not os.access(db, os.W_OK):
        raise TrackingStoreError(f"tracking database {db} (from {origin}) is read-only: make it writable, or "
                                 "pass another --tracking-uri")
    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            if db.stat().st_size <= QUICK_CHECK_BYTES:
                verdict = con.execute("PRAGMA quick_check").fetchone()[0]
                if verdict != "ok":
                    raise sqlite3.DatabaseError(f"database disk image is malformed: {verdict}")
            else:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:  # OperationalError included
        raise TrackingStoreError(_sqlite_problem(db, str(exc)) or f"tracking database {db} cannot be read "
                                 f"(SQLite: {exc}): move it aside, or pass another --tracking-uri") from None


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def tracking_failure(exc: BaseException, uri: str) -> TrackingStoreError | None:
    """The :class:`TrackingStoreError` for an error of the tracking client on ``uri`` that comes from the store
    itself (SQLite's error on the file, the server's connection), or None for any other error."""
    import sqlite3

    db = _sqlite_path(uri)
    for e in _chain(exc):
        name = type(e).__name__
        if db is not None and (isinstance(e, sqlite3.DatabaseError) or
                               (type(e).__module__.startswith("sqlalchemy") and name in (
                                   "OperationalError", "DatabaseError", "IntegrityError"))):
            text = str(getattr(e, "orig", None) or e).splitlines()[0]
            problem = _sqlite_problem(db, text)
            if problem:
                return TrackingStoreError(problem)
        if db is None and uri.startswith(("http://", "https://")) and (
                name in ("ConnectionError", "MaxRetryError", "NewConnectionError", "RetryError")
                or "Max retries exceeded" in str(e)):
            return TrackingStoreError(
                f"tracking server {uri} stopped answering ({name}): restart it (`worth services up --only mlflow`) "
                "and rerun: finished runs are kept and resumed")
    return None


def _drop_store_tracebacks(record) -> bool:
    """MLflow's SQL store logs every database error with its traceback before raising it: the error is
    reported once, as :class:`TrackingStoreError`, so the logged copy is dropped."""
    return not (record.exc_info and record.levelno >= 40)


class TrackingClient:
    """An :class:`~mlflow.tracking.MlflowClient` whose every call turns the store's own failures (a damaged or
    full SQLite file, a server gone) into :class:`TrackingStoreError` (:func:`tracking_failure`)."""

    def __init__(self, uri: str):
        import logging

        from mlflow.tracking import MlflowClient

        store_log = logging.getLogger("mlflow.store.db.utils")
        if _drop_store_tracebacks not in store_log.filters:
            store_log.addFilter(_drop_store_tracebacks)
        self.uri = uri
        self._client = self._guarded(MlflowClient)(tracking_uri=uri)  # it opens (and migrates) the store now

    def _guarded(self, fn):
        uri = self.uri

        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                mapped = tracking_failure(exc, uri)
                if mapped is None:
                    raise
                raise mapped from exc

        return call

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        return self._guarded(attr) if callable(attr) else attr


def resolve_artifact_location(uri: str, experiment: str, explicit: str | None = None) -> str | None:
    """Where a new experiment's artifacts go: ``explicit``, else beside a SQLite database, else the server's.

    Raises
    ------
    ValueError
        For a database URI that is neither SQLite nor a server (``postgresql://...``) without ``explicit``:
        MLflow would otherwise write to ``./mlruns`` under the working directory.
    """
    if explicit:
        return explicit if "://" in explicit else Path(explicit).resolve().as_uri()
    db = _sqlite_path(uri)
    if db is not None:
        return (db.resolve().parent / "artifacts" / experiment).as_uri()  # the study's and the night's alike
    if uri.startswith(("http://", "https://", "databricks")):
        return None  # the tracking server decides (its --artifacts-destination)
    raise ValueError(f"tracking URI {uri!r} is a database without a place for artifacts: pass --artifact-location "
                     "(a folder or an object-store URL such as s3://bucket/mlartifacts).")


def _client(uri: str) -> TrackingClient:
    return TrackingClient(uri)


def ensure_experiment(client, uri: str, experiment: str, artifact_location: str | None = None) -> str:
    """The id of ``experiment`` in ``uri``, created when missing with its artifacts where
    :func:`resolve_artifact_location` says (a SQLite database's folder is created first).

    Raises
    ------
    ValueError
        The experiment was deleted (restoring it is the fix), or the URI has no place for artifacts.
    """
    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return client.create_experiment(experiment,
                                        artifact_location=resolve_artifact_location(uri, experiment, artifact_location))
    if found.lifecycle_stage == "deleted":
        raise ValueError(f"experiment {experiment!r} was deleted in {uri}: restore it "
                         f"(`mlflow experiments restore --experiment-id {found.experiment_id}`) or pass "
                         "another --experiment name.")
    return found.experiment_id


#: The share key of the view :func:`set_default_view` stores: MLflow's UI reads a shared view (its "Share"
#: button's) from the experiment tag ``mlflow.sharedViewState.<key>`` when the page's address carries
#: ``?viewStateShareKey=<key>`` — the one way MLflow offers to open an experiment on chosen columns for everyone.
VIEW_KEY = "worth-default"
#: The columns MLflow's runs table shows by default (its own ``attributes`` columns), kept in the view.
_DEFAULT_COLUMNS = ["attributes.`Duration`", "attributes.`Dataset`"]


def set_default_view(client, experiment_id: str, metrics: Sequence[str], params: Sequence[str] = (),
                     order_by: str | None = None) -> None:
    """Store the experiment's default view: the runs table with ``metrics`` and ``params`` as columns (MLflow
    shows none until they are picked by hand), sorted by ``order_by`` (a metric, descending; default the start
    time). Opened by :func:`experiment_page`. Written only when the stored view differs, so opening an
    experiment whose view is set stays a read (a tracker opens on a full disk and fails at its first write)."""
    columns = [*_DEFAULT_COLUMNS, *(f"params.`{p}`" for p in params), *(f"metrics.`{m}`" for m in metrics)]
    state = json.dumps({"selectedColumns": columns, "orderByAsc": False,
                        "orderByKey": f"metrics.`{order_by}`" if order_by else "attributes.start_time"})
    tag = f"mlflow.sharedViewState.{VIEW_KEY}"
    if client.get_experiment(experiment_id).tags.get(tag) != state:
        client.set_experiment_tag(experiment_id, tag, state)


def experiment_page(experiment_id: str) -> str:
    """The UI address (after the server's root) of the experiment's runs on its default view."""
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}"


def is_server(uri: str) -> bool:
    """Whether ``uri`` is a tracking server (``http(s)://``), whose UI is its own address; else a store that
    ``mlflow ui`` (:func:`ui_command`) opens on MLflow's default address."""
    return uri.startswith(("http://", "https://"))


def experiment_url(uri: str, experiment_id: str) -> str:
    """Where a browser opens the experiment on its default view: on the tracking server itself, else on the
    server :func:`ui_command` starts (MLflow's default address)."""
    root = uri.rstrip("/") if is_server(uri) else "http://127.0.0.1:5000"
    return f"{root}/{experiment_page(experiment_id)}"


def _metric(value: Any) -> float | None:
    """A metric value MLflow stores faithfully, or ``None`` to leave it out (NaN: undefined, not zero)."""
    if value is None or isinstance(value, bool):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


@dataclass
class RunRecord:
    """A run found by key: its id, status and logged values (``metrics`` latest values, ``params`` strings)."""

    run_id: str
    status: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]

    @property
    def finished(self) -> bool:
        return self.status == FINISHED


class Tracker:
    """One study's experiment in one tracking store, written only from the flow process.

    Make one with :meth:`open`; it creates the store's database and the experiment (with its artifact
    location) right away, before any worker runs.
    """

    def __init__(self, client, experiment_id: str, uri: str, experiment: str):
        self.client = client
        self.experiment_id = experiment_id
        self.uri = uri
        self.experiment = experiment

    @classmethod
    def open(cls, uri: str, experiment: str, artifact_location: str | None = None) -> "Tracker":
        """Create (or find) the experiment ``experiment`` in the tracking store ``uri``."""
        client = _client(uri)
        exp_id = ensure_experiment(client, uri, experiment, artifact_location)
        set_default_view(client, exp_id, STUDY_COLUMNS, params=["kind", "objective", "regime", "k"], order_by="accuracy")
        return cls(client, exp_id, uri, experiment)

    @property
    def artifact_location(self) -> str:
        return self.client.get_experiment(self.experiment_id).artifact_location

    # ---------------------------------------------------------------- finding runs
    def runs_by_key(self) -> dict[str, RunRecord]:
        """Every run of the experiment that carries a ``worth.key``, by key (one search, paged)."""
        from mlflow.entities import ViewType

        out: dict[str, RunRecord] = {}
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], run_view_type=ViewType.ALL, max_results=1000,
                                           page_token=token)
            for run in page:
                key = run.data.tags.get(KEY_TAG)
                if key is not None and key not in out:
                    out[key] = RunRecord(run.info.run_id, run.info.status, dict(run.data.metrics),
                                         dict(run.data.params), dict(run.data.tags))
            token = page.token
            if not token:
                return out

    # ---------------------------------------------------------------- writing runs
    def start(self, key: str, name: str, *, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, str] | None = None, parent_id: str | None = None,
              existing: RunRecord | None = None) -> str:
        """The id of the run for ``key``: ``existing`` reopened (status back to RUNNING), else a new run.

        Params are logged at once (so a run killed mid-way still says what it was); relogging the same values
        on reopening is allowed by MLflow, a changed value is not — and cannot happen, since the key hashes them.
        """
        from mlflow.entities import Param, RunTag

        all_tags = {KEY_TAG: key, **(tags or {})}
        if parent_id:
            all_tags[PARENT_TAG] = parent_id
        if existing is not None:
            run_id = existing.run_id
            self.client.update_run(run_id, status="RUNNING")
            params = {k: v for k, v in (params or {}).items() if k not in existing.params}
        else:
            run_id = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in (params or {}).items()],
                              tags=[RunTag(k, v) for k, v in all_tags.items()] if existing is not None else [])
        return run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any] | list[tuple[str, Any, int]]) -> None:
        """Log finite metrics in batches: a mapping (step 0) or ``(name, value, step)`` triples.

        NaN and ``None`` are left out: "undefined" (a correlation of a constant score) is not a number to plot.
        """
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [(k, v, 0) for k, v in metrics.items()] if isinstance(metrics, Mapping) else metrics
        batch = [Metric(k, v, now, step) for k, raw, step in items if (v := _metric(raw)) is not None]
        for start in range(0, len(batch), 1000):  # MLflow's per-batch limit
            self.client.log_batch(run_id, metrics=batch[start:start + 1000])

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_json(self, run_id: str, data: Any, name: str) -> None:
        """``data`` as the artifact ``name`` (a JSON file) of the run."""
        with tempfile.TemporaryDirectory(prefix="worth-track-") as tmp:
            path = Path(tmp) / name
            path.write_text(json.dumps(data, indent=1, default=str))
            self.client.log_artifact(run_id, str(path))

    def log_files(self, run_id: str, paths, artifact_path: str | None = None) -> None:
        for p in paths:
            self.client.log_artifact(run_id, str(p), artifact_path)

    def finish(self, run_id: str, status: str = FINISHED) -> None:
        self.client.set_terminated(run_id, status)

    def run_url(self, run_id: str) -> str:
        """Where the run is in the MLflow UI (relative to the UI's address)."""
        return f"#/experiments/{self.experiment_id}/runs/{run_id}"


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this tracking store (one light worker: ``mlflow ui`` starts four
    and a job queue by default)."""
    if is_server(uri):
        return f"open {uri} in a browser"
    return f"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri {uri} --workers 1"


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """Markdown that reaches a run: a link on a tracking server; on a local store the command that opens the UI
    and the run's address in it (a temporary server's link would go nowhere once the command ended)."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}"
    if is_server(uri):
        return f"[MLflow run `{run_id}`]({uri.rstrip('/')}/{page})"
    return f"MLflow run `{run_id}`: open the UI with `{ui_command(uri)}`, then http://127.0.0.1:5000/{page}"


# -- nightly curation runs ---------------------------------------------------------------------------------------
# One MLflow run per curated night in the experiment ``worth-nightly``: the night's parameters (the held-out set's
# digest among them), its metrics with deltas against the previous night measured on the same held-out rows and
# per-class held-out accuracy (``accuracy.class.C``, as the study's subset runs), and its artifacts (contact
# sheet, additions). A run is tagged with the night's deterministic key, so a night rerun after a crash finds and
# finishes its run instead of adding one; a night whose objective changed carries no ``delta_value`` and the tag
# ``worth.delta_value`` saying why.

def default_tracking_uri(beside: str, explicit: str | None = None, *, check: bool = False) -> str:
    """The night's tracking URI (:func:`pick_tracking_uri`): ``explicit``, else ``MLFLOW_TRACKING_URI`` when set
    (the services' MLflow server), else a SQLite file in folder ``beside`` (the folder holding the curated
    versions' folder, which is the store's :func:`project_folder` for a local store)."""
    return pick_tracking_uri(explicit, beside, check=check)


#: The study's runs table's columns: each subset's held-out accuracy beside the scores that should predict it.
STUDY_COLUMNS = ["accuracy", "score.facility-location", "score.vendi", "score.logdet", "n_train"]
#: The nightly runs table's columns (:func:`set_default_view`): what a night is judged by, at a glance.
NIGHT_COLUMNS = ["accuracy", "delta_accuracy", "value", "delta_value", "n_curated", "added", "n_test"]


def nightly_experiment(uri: str, name: str = NIGHTLY_EXPERIMENT) -> str:
    """The experiment's id, created when missing (:func:`ensure_experiment`: the one artifact rule), its default
    view on the night's metrics (:func:`set_default_view`)."""
    client = _client(uri)
    exp_id = ensure_experiment(client, uri, name)
    set_default_view(client, exp_id, NIGHT_COLUMNS, params=["objective"])
    return exp_id


def find_night(tracking_uri: str, experiment_id: str, key: str) -> Any | None:
    """The run tagged with ``key`` (any state, deleted ones included), or None."""
    from mlflow.entities import ViewType

    runs = _client(tracking_uri).search_runs(
        [experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'", run_view_type=ViewType.ALL,
        max_results=1)
    return runs[0] if runs else None


def _log_night(tracking_uri: str, experiment: str, key: str, run_name: str, params: Mapping[str, Any],
               metrics: Mapping[str, float], step: int, artifacts: Mapping[str, str] | Sequence[str] = (),
               tags: Mapping[str, str] | None = None, start_ms: int | None = None,
               datasets: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Log one night as one run, left RUNNING: :func:`finish_night` finishes it once its version is published
    (a night that fails to publish leaves no FINISHED run for a version that does not exist). A FINISHED run with
    the same key is returned untouched (no duplicate); an unfinished one (killed, or its publish failed) is
    logged into again.

    ``artifacts``: ``{artifact name: path}`` (stable names, ``contact_sheet.png``, so MLflow's compare view finds
    them in every night) or paths. ``start_ms``: when the night began, so the run's duration spans its work.
    ``datasets``: ``{"name", "digest", "source", "context", "rows"}`` logged as MLflow dataset inputs (lineage:
    the runs table's Dataset column). Returns ``{"run_id", "experiment_id", "resumed", "existing"}``.
    """
    import shutil

    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

    client = _client(tracking_uri)
    exp_id = nightly_experiment(tracking_uri, experiment)
    found = find_night(tracking_uri, exp_id, key)
    if found is not None and found.info.status == "FINISHED":
        return {"run_id": found.info.run_id, "experiment_id": exp_id, "resumed": False, "existing": True}
    if found is not None:
        run_id = found.info.run_id
    else:
        run_id = client.create_run(exp_id, run_name=run_name, start_time=start_ms,
                                   tags={KEY_TAG: key, **dict(tags or {})}).info.run_id
    ms = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, ms, step) for k, raw in metrics.items()
                                      if (v := _metric(raw)) is not None],  # None and NaN: undefined, not logged
                     params=[Param(k, str(v)) for k, v in params.items()],
                     tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])
    named = dict(artifacts) if isinstance(artifacts, Mapping) else {os.path.basename(p): p for p in artifacts}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in named.items():
            if path:
                client.log_artifact(run_id, shutil.copyfile(path, os.path.join(tmp, name)))
    if datasets:
        client.log_inputs(run_id, datasets=[
            DatasetInput(Dataset(name=d["name"], digest=str(d["digest"])[:36], source_type="local",
                                 source=json.dumps({"uri": str(d["source"])}),
                                 profile=json.dumps({"num_rows": int(d["rows"])})),
                         tags=[InputTag("mlflow.data.context", d.get("context", "training"))])
            for d in datasets])
    return {"run_id": run_id, "experiment_id": exp_id, "resumed": found is not None, "existing": False}


def _finish_night(tracking_uri: str, run_id: str, status: str = "FINISHED", description: str | None = None) -> None:
    """End a night's run: ``FINISHED`` once its version is published (``description``, the night's summary with
    its Prefect link, becomes the run's note on the run page), ``FAILED`` when publishing failed."""
    client = _client(tracking_uri)
    if description:
        client.set_tag(run_id, "mlflow.note.content", description)
    client.set_terminated(run_id, status)


log_night = worth_task(_log_night, name="log-night", cache=False)  # runs in the flow's process (one writer)
finish_night = worth_task(_finish_night, name="finish-night", cache=False)
