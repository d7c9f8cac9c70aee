"""Commands of selection: ``select`` (one process with ``--input``, the select flow with ``--store``) and
``selections`` (list a store's manifests, export one as sorted ids)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from flows.cli.errors import bad_input, refusing
from flows.cli.exports import (
    check_export, embeddings_option, force_option, format_option, out_option, source_param_option, write_export,
)
from flows.cli.options import (
    launch, runner_option, scheduler_option, storage_option_option, store_option, store_ref, workers_option,
)
from flows.cli.params import parse_params


def _select_input(input: str, k: Optional[int], objective: str, optimizer: str, method: str, param: list[str],
                  normalize: bool, seed: Optional[int], force: bool, out: Optional[Path], show: int,
                  labels: Optional[str], quotas: Optional[str]) -> None:
    """``--input``: the selection in this process, no Prefect (the table, the summary line, ``--out`` JSON).

    Everything the run needs is checked before it starts — the output path, the input, labels and quotas — so a
    bad argument never costs a finished selection.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from flows.cli.core import console
    from flows.cli.params import check_output_path, load_input, parse_quotas, resolve_labels
    from worth import select

    if k is None:
        raise typer.BadParameter("--k is required with --input (the number of items to select)", param_hint="--k")
    out = check_output_path(out)
    params = parse_params(param)
    inputs = load_input(input)
    y = resolve_labels(inputs, labels)
    quota = parse_quotas(quotas, y)
    X = inputs.X
    with Progress(TextColumn("[bold]selecting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("select", total=k)
        try:
            sel = select(X, k, objective, optimizer, method, normalize=normalize, seed=seed, force=force,
                         labels=y if quota is not None or objective == "scaling-law" else None, quotas=quota,
                         progress=lambda step, total: bar.update(task, completed=step), **params)
        except ValueError as err:  # the library refused the arguments: bad input (exit 2); its message names the fix
            raise typer.BadParameter(str(err)) from None
    idx, gains, values = (np.asarray(a) for a in (sel.indices, sel.gains, sel.values))
    if show:
        table = Table(title=f"{sel.objective} {sel.params} — {sel.optimizer}/{sel.method}, "
                            f"n={X.shape[0]}, m={X.shape[1]}")
        for col in ("step", "index", "gain", "value"):
            table.add_column(col, justify="right")
        for step in range(min(show, k)):
            table.add_row(str(step + 1), str(idx[step]), f"{gains[step]:.6g}", f"{values[step]:.6g}")
        if k > show:
            table.add_row("…", "…", "…", "…")
            table.add_row(str(k), str(idx[-1]), f"{gains[-1]:.6g}", f"{values[-1]:.6g}")
        console.print(table)
    console.print(
        f"selected {k} of {X.shape[0]}: {sel.objective} = {sel.value:.6g}; "
        f"{sel.timings['evaluations']} gain evaluations in {sel.timings['total']:.2f} s"
    )
    if out:
        record = {"objective": sel.objective, "params": sel.params, "optimizer": sel.optimizer, "method": sel.method,
                  "normalize": normalize, "indices": idx.tolist(), "gains": gains.tolist(),
                  "values": values.tolist(), "timings": sel.timings}
        if inputs.ids is not None:  # a store's items by their ids, not only row positions
            record["ids"] = [str(i) for i in np.asarray(inputs.ids)[idx]]
        out.write_text(json.dumps(record, indent=2))
        console.print(f"wrote {out}")


def _quotas(text: Optional[str]):
    """``--quotas 5`` (every class) or ``--quotas '{"0": 5, "3": 2}'``."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, bool) or not isinstance(value, (int, dict)):
        raise typer.BadParameter(f"{text!r}: give one count for every class (5) or a JSON object {{\"0\": 5}}",
                                 param_hint="--quotas")
    return value


def select_cmd(
    input: Optional[str] = typer.Option(None, "--input", "-i", help="Embeddings: a Zarr embedding store, a .npy "
                                        "file, a .npz with X (and y), or 'digits'. One process, no Prefect."),
    store: Optional[str] = store_option("An embedding store (path or fsspec URL): run the select flow and keep the "
                                        "result as a versioned manifest in it.", required=False),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="--store: the selection's name (its manifests: "
                                       "selections/NAME/vNNNN.json)."),
    specs: Optional[Path] = typer.Option(None, "--specs", help="--store: a JSON list of selection specs (fields of "
                                         "flows.select.SelectionSpec), all scheduled in one run; instead of --name."),
    objective: str = typer.Option("vendi", help="Objective name (see `worth objectives`)."),
    k: Optional[int] = typer.Option(None, "--k", "-k", help="Number of items to select."),
    optimizer: str = typer.Option("greedy", help="greedy, lazy or stochastic."),
    method: str = typer.Option("auto", help="Gain method: auto, oracle, secular, secular-portable, closed-form."),
    param: list[str] = typer.Option([], "--param", "-p", help="Objective parameter KEY=VALUE (repeatable)."),
    normalize: bool = typer.Option(True, help="--input: L2-normalise rows first."),
    seed: Optional[int] = typer.Option(None, help="Seed of the stochastic optimiser (--store: and of the sharded "
                                       "partition; default 0)."),
    force: bool = typer.Option(False, help="--input: allow lazy greedy on a non-submodular objective."),
    out: Optional[Path] = typer.Option(None, help="--input: write the selection as JSON here."),
    show: int = typer.Option(25, help="--input: rows of the pick table to print (0: none)."),
    regime: str = typer.Option("fixed", help="--store: fixed, balanced, per-class or sharded."),
    parts: Optional[int] = typer.Option(None, "--parts", help="--store: GreeDi parts of the sharded regime."),
    quotas: Optional[str] = typer.Option(None, "--quotas", help="Picks per class. --input: balanced, CLASS=COUNT "
                                         "pairs (0=10,1=5) or JSON; --store: N (every class) or JSON {label: N}."),
    labels: Optional[str] = typer.Option(None, "--labels", help="--input: the classes for --quotas: input (the "
                                         "input's own: a store's labels, a .npz's y; default), none, or FILE.npy."),
    budget: Optional[float] = typer.Option(None, "--budget", help="--store: total cost the picks may spend."),
    costs: Optional[str] = typer.Option(None, "--costs", help="--store: name of the store's cost array."),
    split: str = typer.Option("train", "--split", help="--store: select among this split's rows ('all': every row)."),
    init: Optional[str] = typer.Option(None, "--init", help="--store: condition on a manifest NAME[@vN]."),
    target: Optional[str] = typer.Option(None, "--target", help="--store: a .npy of query embeddings (mutual "
                                         "information with them)."),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="--store: select among the finished rows of "
                                       "a store still being written."),
    storage_option: Optional[list[str]] = storage_option_option(),
    runner: str = runner_option("jobs"),
    workers: Optional[int] = workers_option("jobs"),
    scheduler: Optional[str] = scheduler_option(),
) -> None:
    """Greedily select items maximising OBJECTIVE: --input FILE in this process, or --store S --name N through the
    select flow (a versioned manifest in the store)."""
    if (input is None) == (store is None):
        raise bad_input("give exactly one of --input FILE (one process) or --store STORE (the select flow)")
    if input is not None:
        _select_input(input, k, objective, optimizer, method, param, normalize, seed, force, out, show, labels,
                      quotas)
        return
    if (name is None) == (specs is None):
        raise bad_input("with --store give exactly one of --name NAME (one selection) or --specs FILE (a JSON list)")
    target_kw = launch(runner, workers, scheduler)
    ref = store_ref(store, storage_option)
    # planning refuses what cannot be selected (specs, store, quotas ...) before any job: bad input, exit 2
    with refusing(ValueError, FileNotFoundError, json.JSONDecodeError):
        from flows.select import SelectionSpec, SelectOptions

        if specs is not None:
            spec_list = [SelectionSpec.model_validate(s) for s in json.loads(specs.read_text())]
        else:
            spec_list = [SelectionSpec(name=name, objective=objective, params=parse_params(param), k=k,
                                       budget=budget, costs=costs, optimizer=optimizer, method=method,
                                       seed=0 if seed is None else seed, split=None if split == "all" else split,
                                       init=init, target=target, regime=regime, parts=parts,
                                       quotas=_quotas(quotas))]
        options = SelectOptions(store=ref.url, storage_options=dict(ref.storage_options),
                                selections=spec_list, allow_partial=allow_partial)
        from flows.select import run_select

        result = run_select(options, **target_kw)
    for e in result["manifests"]:
        how = "wrote" if e["status"] == "written" else "exists (same job key, skipped):"
        typer.echo(f"{e['name']} v{e['version']}: {how} {e['path']}  ({e['regime']}, {e['objective']} = "
                   f"{e['value']:.6g}, k = {e['k']})")
    from flows.runtime import prefect_lines

    for line in prefect_lines(result):  # the flow run, reachable once this command (and its server) has ended
        typer.echo(line.strip())


def selections_cmd(
    store: str = store_option("The embedding store (path or fsspec URL)."),
    export: Optional[str] = typer.Option(None, "--export", help="Export manifest NAME[@vN] (see --format)."),
    format: Optional[str] = format_option(),
    out: Optional[Path] = out_option(),
    force: bool = force_option(),
    embeddings: bool = embeddings_option(),
    source_param: Optional[list[str]] = source_param_option(),
    storage_option: Optional[list[str]] = storage_option_option(),
) -> None:
    """List the selection manifests of a store (name, version, objective, k, value, created), or export one."""
    from flows.cli import render
    from storage import manifest as mf

    ref = store_ref(store, storage_option)
    with refusing(ValueError, FileNotFoundError):
        check_export(export, out, format, force=force, embeddings=embeddings, source_param=source_param)
        if export is not None:
            from pipeline.export import from_manifest

            subset = from_manifest(ref, mf.read_manifest(ref, export))
        else:
            damaged: list = []
            rows = mf.list_manifests(ref, damaged=damaged)
    if export is not None:
        write_export(subset, ref, out, format, force, source_param, embeddings)
        return
    for exc in damaged:  # the readable ones are listed below; each damaged file by its path, with the repair
        typer.echo(f"warning: {exc}", err=True)
    if not rows:
        typer.echo(f"no selections in {store} yet: make one with `worth select --store {store} --name NAME --k K`")
        return
    render.show(render.selections_table(rows))


def register(app: typer.Typer) -> None:
    """Add this group's commands to the ``worth`` app."""
    app.command("select")(select_cmd)
    app.command("selections")(selections_cmd)
