"""``worth nights``: the curated versions of a store (one per night of ``worth curate``), listed or exported.

The list follows ``LATEST`` back through each version's ``previous`` link (:func:`storage.curated.history`), so a
file a killed run left unreferenced is not shown as a night. ``--export vN`` writes a version in the formats of
``worth selections --export`` (:mod:`pipeline.export`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from flows.cli.errors import bad_input, refusing
from flows.cli.exports import (
    check_export, embeddings_option, force_option, format_option, out_option, source_param_option, write_export,
)
from flows.cli.options import storage_option_option, store_option, store_ref


def _version(text: str) -> int | None:
    """``v2``, ``2``, ``v0002`` → 2; ``latest`` → None (the version LATEST points at)."""
    t = text.strip().lower()
    if t == "latest":
        return None
    digits = t[1:] if t.startswith("v") else t
    if not digits.isdigit() or int(digits) < 1:
        raise bad_input(f"--export {text!r}: give a version (v2, 2 or latest)")
    return int(digits)


def nights_cmd(
    store: str = store_option("The embedding store that `worth curate` curates (path or fsspec URL)."),
    curated: Optional[str] = typer.Option(None, "--curated", help="Folder of the versions (default STORE.curated)."),
    as_json: bool = typer.Option(False, "--json", help="Print the versions as JSON (full precision)."),
    export: Optional[str] = typer.Option(None, "--export", help="Export curated version vN (or latest)."),
    format: Optional[str] = format_option(),
    out: Optional[Path] = out_option(),
    force: bool = force_option(),
    embeddings: bool = embeddings_option(),
    source_param: Optional[list[str]] = source_param_option(),
    storage_option: Optional[list[str]] = storage_option_option(),
) -> None:
    """List the curated versions of a store (version, date, size, objective, accuracy, delta), or export one."""
    from flows.cli import render
    from storage import curated as versions

    ref = store_ref(store, storage_option)
    with refusing(ValueError):
        check_export(export, out, format, force=force, embeddings=embeddings, source_param=source_param)
        version = None if export is None else _version(export)
        folder = versions.curated_dir(ref, curated)
    if not os.path.isdir(folder):
        if not ref.exists():
            raise bad_input(f"no store at {store} and no curated folder {folder}: check --store, or make them with "
                            f"`worth curate SOURCE --store {store}`")
        if export is not None:  # nothing to export is a refusal, not a listing that happens to be empty
            raise bad_input(f"--export {export}: {store} has no curated versions yet ({folder} does not exist): "
                            f"curate a night first with `worth curate SOURCE --store {store}`, or give --curated")
        typer.echo(f"no curated versions of {store} yet ({folder} does not exist): curate a night with "
                   f"`worth curate SOURCE --store {store}`")
        return
    damaged: list = []
    with refusing(ValueError):
        chain = versions.history(folder, damaged=None if export is not None else damaged)
    if export is not None:
        with refusing(ValueError, FileNotFoundError):
            from pipeline.export import from_curated

            if not ref.exists():
                raise ValueError(f"no store at {store}: the export reads the curated items' classes from it")
            if version is not None and version not in {int(r["version"]) for r in chain}:
                known = ", ".join(f"v{int(r['version'])}" for r in chain) or "none"
                raise ValueError(f"{folder} has no published version v{version} (published: {known})")
            subset = from_curated(ref, folder, version)
        write_export(subset, ref, out, format, force, source_param, embeddings)
        return
    for exc in damaged:  # the readable versions are listed below; each damaged file by its path, with the repair
        typer.echo(f"warning: {exc}", err=True)
    if not chain:
        typer.echo(f"no curated versions in {folder} yet: curate a night with `worth curate SOURCE --store {store}`")
        return
    rows = [render.night_row(r) for r in chain]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    render.show(render.nights_table(rows, title=f"Curated versions of {store} ({folder})"))


def register(app: typer.Typer) -> None:
    """Add this group's commands to the ``worth`` app."""
    app.command("nights")(nights_cmd)
