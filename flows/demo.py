"""``make demo`` / ``worth demo``: two nights of curation on scikit-learn's digits, with every engine running locally.

Night 1 delivers the first 1,000 digits, night 2 all 1,797. Each night runs the curate flow against one local
Prefect server (its database under ``OUT/prefect-home``, so the UI shows the runs afterwards), on a Dask
LocalCluster, into a local Zarr store (``OUT/digits.zarr``), logging to MLflow on a SQLite file
(``OUT/mlflow.db``). It then prints what was curated — ids and classes — writes the contact sheet
(``OUT/curated.png``, also an MLflow artifact of the night) and prints how to open both UIs (what it prints is
the CLI's: ``describe`` and ``links``).

Run again, it changes nothing (each night is a no-op: the store already has every item); ``rm -rf OUT`` starts over.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable

NIGHTS = (1000, None)  # items delivered by night: the first 1,000 digits, then all of them


def prepare_environment(out: str) -> None:
    """Point Prefect at ``OUT/prefect-home`` (before Prefect is imported) and keep everything offline.

    Raises ``ValueError`` when ``out`` is a file (bad input, named)."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out!r} is a file: give a folder for the demo (made when missing)")
    os.makedirs(out, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", os.path.abspath(os.path.join(out, "prefect-home")))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # the nights' lines, not the cluster's chatter


def run_demo(out: str = "demo", *, k: int = 40, workers: int = 2, echo: Callable[[str], None] = print,
             describe: Callable[[dict[str, Any]], str] | None = None,
             links: Callable[[dict[str, Any]], str] | None = None) -> list[dict[str, Any]]:
    """Curate digits in two nights under ``out``; returns the two nights' results (as :func:`run_curate`).

    ``describe(result)`` says what a night curated and ``links(result)`` where the last night is recorded (the
    CLI's :func:`flows.cli.render.night_text` and :func:`~flows.cli.render.records_text`); each is echoed when
    given."""
    prepare_environment(out)
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    from flows.curate import CurateOptions, run_curate
    from infra.dask import cluster_kwargs, local_spec, prefect_api

    tracking = "sqlite:///" + os.path.abspath(os.path.join(out, "mlflow.db"))
    nights = []
    with prefect_api():
        # one LocalCluster for both nights (started after the Prefect API, so its workers report to it): a
        # cluster per night costs a start and a close each, and the close timed out on a loaded 2-core machine
        cluster = LocalCluster(**cluster_kwargs(local_spec(workers))[1])
        try:
            for night, limit in enumerate(NIGHTS, 1):
                options = CurateOptions(source="digits", store=os.path.join(out, "digits.zarr"), limit=limit, k=k,
                                        chunk_rows=512, tracking_uri=tracking)
                echo(f"\n== night {night}: {limit or 'all 1,797'} digits delivered")
                result = run_curate(options, task_runner=DaskTaskRunner(address=cluster.scheduler_address))
                nights.append(result)
                if describe is not None:
                    echo(describe(result))
            last = nights[-1]["record"]
            sheet = os.path.join(out, "curated.png")
            if last.get("contact_sheet") and os.path.exists(last["contact_sheet"]):
                shutil.copyfile(last["contact_sheet"], sheet)
                echo(f"\nContact sheet of the curated set (tonight's additions in red): {sheet}")
            if links is not None:
                echo(links(nights[-1]))
        finally:
            try:
                cluster.close(timeout=120)
            except TimeoutError:  # everything is written; seen on a 2-core machine at load 20
                echo("note: the Dask cluster took over 120 s to close; its workers end with this process")
    return nights
