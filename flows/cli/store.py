"""Commands of the embedding store: ``embed`` (the Prefect embed flow, resumable) and ``info``."""

from __future__ import annotations

import json
import threading
from typing import Optional

import typer

from flows.cli.options import (
    launch, runner_option, scheduler_option, storage_option_option, store_option, store_ref, workers_option,
)
from flows.cli.params import parse_params


def _watch(ref, total: int, stop: threading.Event, start_rows: int) -> None:
    """Progress bar fed by the store's completed-chunk record (works whatever runs the shards)."""
    from tqdm import tqdm

    from storage.store import EmbeddingStore

    with tqdm(total=total, unit="item", desc="embedding", dynamic_ncols=True, disable=None) as bar:  # TTY only
        while True:
            finished = stop.wait(0.5)
            try:
                store = EmbeddingStore.open(ref)
                done = store.rows_done() - start_rows
            except Exception:  # the store may not exist yet
                done = 0
            bar.update(max(0, min(done, total) - bar.n))
            if finished:
                return


def embed_command(
    source: str = typer.Argument(..., help="digits, mnist5k, fashion-mnist, an image folder, a .txt/.csv/.tsv/"
                                 ".parquet/.npy/.npz file, or hf:NAME"),
    encoder: str = typer.Option("pixels", "--encoder", "-e",
                                help="pixels, efficientnet-lite0, minilm, or timm:NAME / open_clip:ARCH / hf:NAME"),
    store: str = store_option(),
    chunk_rows: int = typer.Option(16_384, "--chunk-rows", min=1, help="rows per chunk (unit of resume)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="embed only the first N items"),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="encoder parameter KEY=VALUE (repeat)"),
    source_param: Optional[list[str]] = typer.Option(None, "--source-param",
                                                     help="source option KEY=VALUE (repeat), e.g. label_column=label"),
    storage_option: Optional[list[str]] = storage_option_option(),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or float16"),
    no_normalize: bool = typer.Option(False, "--no-normalize", help="keep rows as the encoder gives them"),
    runner: str = runner_option("shards", inline=": quickest for small pools"),
    workers: Optional[int] = workers_option("shards"),
    scheduler: Optional[str] = scheduler_option(),
) -> None:
    """Embed SOURCE into a resumable Zarr store: reruns finish what a killed run left and append new items."""
    from storage.lock import writer_lock
    from worth.data.encoders import get_encoder
    from worth.data.sources import load_source

    target = launch(runner, workers, scheduler)
    enc_params = parse_params(param, "--param")
    src_params = parse_params(source_param, "--source-param")
    ref = store_ref(store, storage_option)
    try:
        src = load_source(source, limit=limit, **src_params)
        enc = get_encoder(encoder, normalize=not no_normalize, **enc_params)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="SOURCE / --encoder") from None
    # The lock is the run's first write: a second run, a read-only or full filesystem, or a path that is a file
    # fail here, in one line, before any server or cluster starts. The flow takes it again (re-entrant).
    with writer_lock(ref, command=f"worth embed {source} --store {store}"):
        _embed_locked(ref, source, encoder, src, enc, chunk_rows, dtype, limit, enc_params, src_params,
                      no_normalize, runner, target)


def _embed_locked(ref, source, encoder, src, enc, chunk_rows, dtype, limit, enc_params, src_params,
                  no_normalize, runner, target) -> None:
    """The embed command once it holds the store's writer lock."""
    from flows.cli import render
    from storage.embedding import plan
    from storage.integrity import StoreDamagedError

    store = ref.url
    try:
        todo = plan(ref, src, enc, chunk_rows=chunk_rows, dtype=dtype, dry_run=True)
    except StoreDamagedError:
        raise
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--store") from None
    if todo.damaged:
        typer.echo(f"{store}: {len(todo.damaged)} damaged chunk(s) found; repairing: "
                   + "; ".join(str(d) for d in todo.damaged[:3]), err=True)
    if todo.nothing_to_do:
        typer.echo(f"{store}: complete, {todo.n:,} items of {source!r} by {encoder!r}; nothing to do.")
        return
    start_rows = 0
    if ref.exists():
        start_rows = ref.open().rows_done()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(ref, todo.pending_rows, stop, start_rows), daemon=True)
    watcher.start()
    try:
        from flows.embed import EmbedOptions, run_embed

        options = EmbedOptions(source=source, store=store, encoder=encoder, encoder_params=enc_params,
                               source_params=src_params, limit=limit, chunk_rows=chunk_rows, dtype=dtype,
                               normalize=not no_normalize, storage_options=dict(ref.storage_options))
        result = run_embed(options, **target)  # inline: {} (the flow's body, no Prefect)
    finally:
        stop.set()
        watcher.join()
    render.show(render.store_summary(result, rows=result["rows_embedded"], seconds=result["seconds"]))
    from flows.runtime import prefect_lines

    for line in prefect_lines(result):  # the flow run, reachable once this command (and its server) has ended
        typer.echo(line.strip())


def info_command(
    store: str = store_option(),
    storage_option: Optional[list[str]] = storage_option_option(),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    verify: bool = typer.Option(False, "--verify", help="check every chunk of every array against its digest; "
                                "list the damaged ones and exit 1 if there are any"),
) -> None:
    """Summarise an embedding store: size, encoder, source, classes, split, chunks done (--verify: damage)."""
    from flows.cli import render

    ref = store_ref(store, storage_option)
    try:
        st = ref.open()
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--store") from None
    if verify:
        report = st.verify()
        typer.echo(report.text())
        if not report.ok:
            raise typer.Exit(1)
    s = st.summary()
    if as_json:
        typer.echo(json.dumps(s, indent=2, default=str))
        return
    render.show(render.store_summary(s))
    if not s["complete"]:
        typer.echo(f"\nIncomplete: {s['rows_done']:,} of {s['n']:,} rows embedded; rerun `worth embed` to finish.")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the ``worth`` app."""
    app.command("embed")(embed_command)
    app.command("info")(info_command)
