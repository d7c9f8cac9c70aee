"""The export options of ``worth selections`` and ``worth nights``, defined once, and the step that writes one.

The formats and how each is written live in :mod:`pipeline.export`; this module only turns the command line into
a call and the result into a line for the user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.export import FORMATS


def format_option():
    return typer.Option(None, "--format", help=f"Export format: {', '.join(FORMATS)} (hf = datasets; default: "
                        "from the suffix of --out). txt/npy: the sorted ids; parquet: id, class, label, "
                        "pick_order, gain, store_row; datasets: a Hugging Face data set folder (save_to_disk).")


def out_option():
    return typer.Option(None, "--out", help="Where --export writes (a file; a folder for --format datasets).")


def force_option():
    return typer.Option(False, "--force", help="Replace an existing --out.")


def embeddings_option():
    return typer.Option(False, "--embeddings", help="--format datasets: add each pick's embedding as a column.")


def source_param_option():
    return typer.Option(None, "--source-param", help="--format datasets from an hf: source: the source option "
                        "KEY=VALUE it was embedded with (repeat), e.g. split=train or data_files=PATH.")


def check_export(export: Optional[str], out: Optional[Path], fmt: Optional[str], *, force: bool = False,
                 embeddings: bool = False, source_param: Optional[list[str]] = None) -> None:
    """Refuse, before anything is read, what cannot be exported: an export option without ``--export`` (it would
    be ignored), ``--export`` without ``--out``, a format that is not one (``ValueError``: run it inside
    :func:`flows.cli.errors.refusing`)."""
    from pipeline.export import resolve_format

    if export is None:
        given = [name for name, value in (("--out", out), ("--format", fmt), ("--force", force),
                                          ("--embeddings", embeddings), ("--source-param", source_param)) if value]
        if given:
            raise ValueError(f"{', '.join(given)} without --export: add --export (what to write) or drop "
                             f"{'them' if len(given) > 1 else 'it'}")
        return
    if out is None:
        raise ValueError("--export needs --out FILE (where to write)")
    resolve_format(str(out), fmt)


def write_export(subset, ref, out: Path, fmt: Optional[str], force: bool,
                 source_param: Optional[list[str]], embeddings: bool) -> None:
    """Write ``subset`` (a :class:`pipeline.export.Subset`; the options passed :func:`check_export`) and say what
    was written; bad input exits 2."""
    from flows.cli.errors import refusing
    from flows.cli.params import parse_params
    from pipeline import export as ex

    with refusing(ValueError, FileNotFoundError, FileExistsError):
        done = ex.export(subset, ref, str(out), fmt, overwrite=force,
                         source_params=parse_params(source_param, "--source-param"), embeddings=embeddings)
    if done.note:
        typer.echo(f"note: {done.note}", err=True)
    typer.echo(f"wrote {done.n:,} items of {subset.what} to {done.path} ({done.format})")
