"""Options that several commands share, each defined once: where the store is and where the work runs.

A command declares ``store: str = store_option(...)``, ``storage_option: ... = storage_option_option()``,
``runner/workers/scheduler = runner_option(...), workers_option(...), scheduler_option()`` and turns them into
what the library takes with :func:`store_ref` (a :class:`storage.StoreRef`) and :func:`launch` (the keyword
arguments of a ``run_*`` launcher). The help texts differ only in the noun a command runs (shards, subsets,
jobs), which the factories take.
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from flows.cli.errors import bad_input
from flows.cli.params import parse_params

RUNNER_HELP = {
    "dask": "dask (a LocalCluster, or --scheduler)",
    "threads": "threads (Prefect, {what} in this process)",
    "inline": "inline (no Prefect{inline})",
}


def store_option(help: str = "store path or fsspec URL (s3://bucket/pool.zarr)", required: bool = True):
    """``--store/-s``: the embedding store, a local path or an fsspec URL."""
    return typer.Option(... if required else None, "--store", "-s", help=help)


def storage_option_option():
    """``--storage-option KEY=VALUE`` (repeatable): fsspec options of a store URL."""
    return typer.Option(None, "--storage-option", help="fsspec option KEY=VALUE (repeat), e.g. endpoint_url=...")


def runner_option(what: str = "jobs", *, inline: str | None = "", default: str = "dask"):
    """``--runner``: where the tasks run; ``inline=None`` for a command without the inline runner."""
    kinds = [RUNNER_HELP["dask"], RUNNER_HELP["threads"].format(what=what)]
    if inline is not None:
        kinds.append(RUNNER_HELP["inline"].format(inline=inline))
    text = ", ".join(kinds[:-1]) + (", or " if len(kinds) > 2 else " or ") + kinds[-1]
    return typer.Option(default, "--runner", help=text)


def workers_option(what: str = "jobs"):
    """``--workers N``: Dask worker processes of a LocalCluster, or ``what`` at once with ``--runner threads``."""
    return typer.Option(None, "--workers", min=1, help=f"Dask worker processes (default: one per core); threads: "
                        f"{what} at once (default 1)")


def scheduler_option():
    """``--scheduler ADDRESS``: a running Dask scheduler instead of a LocalCluster."""
    return typer.Option(None, "--scheduler", help="address of a running Dask scheduler")


def store_ref(store: str, storage_option: Optional[list[str]] = None):
    """``--store`` and ``--storage-option`` as one :class:`storage.StoreRef`; a bad pair is bad input (exit 2)."""
    from storage.ref import StoreRef

    options = parse_params(storage_option, "--storage-option")
    try:
        return StoreRef(store, options)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--store / --storage-option") from None


def launch(runner: str, workers: Optional[int] = None, scheduler: Optional[str] = None, *,
           inline: bool = True) -> dict[str, Any]:
    """``--runner/--workers/--scheduler`` as a launcher's keyword arguments (:func:`infra.dask.launch_target`).

    An unknown runner — or ``inline`` where ``inline=False`` — is bad input (exit 2), named as the library names it.
    """
    from infra.dask import launch_target

    if runner == "inline" and not inline:
        raise bad_input("runner='inline': this command runs a Prefect flow: use --runner dask or threads")
    try:
        return launch_target(runner, workers=workers, scheduler=scheduler)
    except ValueError as exc:
        raise bad_input(exc) from None
