"""How the CLI shows its closing summaries to a person: rich tables, numbers rounded for reading, long class
lists summarised.

One module for it so that every command reads the same: ``worth info`` and ``worth embed`` (the store summary),
``worth selections`` (the manifests), ``worth nights`` (the curated versions), ``worth curate`` and ``worth demo``
(a night and where it is recorded). What is rounded here is only what is printed; the records (manifests, curated
versions, ``--json``) keep full precision.

Rules:

* gains and objective values: 4 significant digits (``0.01234``, ``12.35``), thousands separated from 1,000 on
  (``12,346``);
* accuracies: a percentage with one decimal (``91.2%``), their changes in percentage points (``+8.1 pp``);
* class counts: listed when there are at most :data:`LIST_CLASSES` classes, else one line
  ``1,000 classes, 12–1,300 rows each (median 1,281)``;
* a table printed to a pipe or a file is as wide as it needs (rich would wrap it at 80 columns), so that
  ``worth selections | grep`` sees one line per row.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

#: At most this many classes are listed one by one; more are summarised.
LIST_CLASSES = 12
MISSING = "-"


# ------------------------------------------------------------------------------------------------ numbers
def _finite(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def number(x: Any, digits: int = 4) -> str:
    """A gain or objective value for people: ``digits`` significant digits, thousands separated from 1,000."""
    v = _finite(x)
    if v is None:
        return MISSING
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    text = f"{v:.{digits}g}"
    return "0" if text in ("-0", "0") else text


def signed(x: Any, digits: int = 4) -> str:
    """A change of a value: always signed (``+0.0123``, ``-1.5``)."""
    v = _finite(x)
    if v is None:
        return MISSING
    text = number(v, digits)
    return text if text.startswith("-") else f"+{text}"


def accuracy(x: Any) -> str:
    """An accuracy in [0, 1] as a percentage with one decimal: ``0.91234`` → ``91.2%``."""
    v = _finite(x)
    return MISSING if v is None else f"{100 * v:.1f}%"


def accuracy_delta(x: Any) -> str:
    """A change of accuracy in percentage points: ``0.0809`` → ``+8.1 pp``."""
    v = _finite(x)
    if v is None:
        return MISSING
    pp = round(100 * v, 1)
    return f"{pp + 0.0:+.1f} pp"  # + 0.0: no "-0.0"


def count(n: Any) -> str:
    """An integer count with thousands separators."""
    return MISSING if n is None else f"{int(n):,}"


def when(iso: Any) -> str:
    """An ISO 8601 time to the minute, as ``2026-12-04 23:01`` (UTC as recorded)."""
    if not iso:
        return MISSING
    text = str(iso).replace("T", " ")
    return text[:16]


# ------------------------------------------------------------------------------------------------ classes
def class_summary(counts: Mapping[Any, int], classes: Sequence[str] | None = None, *,
                  limit: int = LIST_CLASSES) -> str:
    """The rows per class on one short line.

    ``counts`` maps labels (int or their str) to row counts; label −1 means unlabelled and is reported apart.
    Up to ``limit`` classes are listed by name (``0: 178, 1: 182``); more become
    ``1,000 classes, 12–1,300 rows each (median 1,281)``.
    """
    items = sorted(((int(k), int(v)) for k, v in counts.items()), key=lambda kv: kv[0])
    unlabelled = sum(v for k, v in items if k < 0)
    labelled = [(k, v) for k, v in items if k >= 0]
    tail = f"; {unlabelled:,} unlabelled" if unlabelled else ""
    if not labelled:
        return f"none{tail}"
    if len(labelled) <= limit:
        def name(k: int) -> str:
            return str(classes[k]) if classes and k < len(classes) else str(k)

        return ", ".join(f"{name(k)}: {v:,}" for k, v in labelled) + tail
    values = sorted(v for _, v in labelled)
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    median_text = f"{median:,.0f}" if float(median).is_integer() else f"{median:,.1f}"
    spread = (f"{values[0]:,} rows each" if values[0] == values[-1]
              else f"{values[0]:,}–{values[-1]:,} rows each (median {median_text})")
    return f"{len(labelled):,} classes, {spread}{tail}"


def _n_classes(counts: Mapping[Any, int]) -> int:
    return sum(1 for k in counts if int(k) >= 0)


# ------------------------------------------------------------------------------------------------ tables
def _table(title: str | None, columns: Iterable[tuple[str, str]]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, title_justify="left", pad_edge=False)
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True)
    return table


def store_summary(summary: Mapping[str, Any], *, rows: int | None = None, seconds: float | None = None) -> Table:
    """``worth info`` / ``worth embed``: the store summary (:meth:`storage.store.EmbeddingStore.summary`)."""
    table = Table(title=f"Embedding store {summary['url']}", box=None, show_header=False,
                  title_justify="left", pad_edge=False)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value")
    enc = summary.get("encoder") or {}
    src = summary.get("source") or {}
    counts = summary.get("class_counts") or {}
    splits = summary.get("split_counts") or {}
    table.add_row("items (n)", count(summary["n"]))
    table.add_row("dimension (m)", f"{summary['dim']} ({summary['dtype']}, "
                                   f"{'L2-normalised' if summary.get('normalize') else 'raw'})")
    params = ", ".join(f"{k}={v}" for k, v in (enc.get("params") or {}).items())
    table.add_row("encoder", " ".join(str(p) for p in (enc.get("name"), enc.get("version"),
                                                        f"({params})" if params else "") if p))
    table.add_row("source", f"{src.get('spec')} ({src.get('kind')})")
    table.add_row("classes", count(_n_classes(counts)))
    table.add_row("per class", class_summary(counts, summary.get("classes")))
    table.add_row("split", ", ".join(f"{k} {v:,}" for k, v in splits.items()) or MISSING)
    table.add_row("chunks", f"{summary['chunks_complete']:,}/{summary['chunks']:,} complete "
                            f"({summary['chunk_rows']:,} rows each)")
    if rows is not None:
        rate = f", {rows / seconds:,.0f} items/s" if seconds else ""
        table.add_row("embedded this run", f"{rows:,} items in {seconds or 0:.1f} s{rate}")
    table.add_row("size stored", f"{summary.get('bytes_stored', 0) / 2**20:.1f} MiB")
    return table


def selections_table(rows: Sequence[Mapping[str, Any]], *, title: str | None = None) -> Table:
    """``worth selections``: one row per manifest (``storage.manifest.list_manifests``)."""
    table = _table(title, [("name", "left"), ("version", "left"), ("regime", "left"), ("objective", "left"),
                           ("k", "right"), ("value", "right"), ("created", "left")])
    for r in rows:
        table.add_row(str(r["name"]), f"v{r['version']}", str(r.get("regime") or MISSING),
                      str(r.get("objective") or MISSING), count(r.get("k")), number(r.get("value")),
                      when(r.get("created")))
    return table


def night_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The facts of a curated version that ``worth nights`` shows (full precision; :func:`nights_table` rounds)."""
    metrics = record.get("metrics") or {}
    return {"version": int(record["version"]), "created": record.get("created"), "size": len(record.get("ids") or []),
            "added": len(record["added"]) if record.get("added") is not None else metrics.get("added"),
            "objective": record.get("objective"), "value": record.get("value"),
            "accuracy": record.get("accuracy"), "delta_accuracy": metrics.get("delta_accuracy"),
            "n_test": metrics.get("n_test")}


def nights_table(rows: Sequence[Mapping[str, Any]], *, title: str | None = None) -> Table:
    """``worth nights``: one row per curated version (:func:`night_row`), oldest first."""
    table = _table(title, [("version", "left"), ("date (UTC)", "left"), ("size", "right"), ("added", "right"),
                           ("objective", "left"), ("value", "right"), ("accuracy", "right"), ("delta", "right"),
                           ("test rows", "right")])
    for r in rows:
        added = r.get("added")
        table.add_row(f"v{int(r['version']):04d}", when(r.get("created")), count(r.get("size")),
                      MISSING if added is None else f"+{int(added):,}", str(r.get("objective") or MISSING),
                      number(r.get("value")), accuracy(r.get("accuracy")), accuracy_delta(r.get("delta_accuracy")),
                      count(r.get("n_test")))
    return table


# ------------------------------------------------------------------------------------------------ a night
#: At most this many of a night's additions are listed by id; more are counted (``worth nights --export`` has all).
LIST_ADDITIONS = 40


def night_text(result: Mapping[str, Any]) -> str:
    """What a night (a :func:`flows.curate.run_curate` result) curated: version, objective (and why), value,
    held-out accuracy with the delta against last night's set on the same held-out items, tonight's additions
    by id and class (up to :data:`LIST_ADDITIONS`), the curated set's classes (:func:`class_summary`)."""
    rec = result["record"]
    if result["noop"]:
        return (f"nothing new: the store has {rec['store_rows']:,} rows, as curated in v{rec['version']:04d} "
                f"({len(rec['ids']):,} items kept)")
    added = set(rec["added"])
    pairs = [f"{i} ({c})" for i, c in zip(rec["ids"], rec["classes"]) if i in added]
    names = list(rec.get("class_names") or sorted(set(rec["classes"]), key=str))
    index = {str(n): i for i, n in enumerate(names)}
    counts: dict[int, int] = {}
    for c in rec["classes"]:
        counts[index[str(c)]] = counts.get(index[str(c)], 0) + 1
    m = rec["metrics"]
    n_test = (rec.get("test_set") or {}).get("n", m.get("n_test"))
    delta = ("" if m.get("delta_accuracy") is None else
             f" ({accuracy_delta(m['delta_accuracy'])} against v{rec['previous']:04d}'s set on the same held-out "
             f"items: {accuracy(m['previous_accuracy'])})")
    why = (rec.get("objective_choice") or {}).get("why")
    more = f", … and {len(pairs) - LIST_ADDITIONS:,} more" if len(pairs) > LIST_ADDITIONS else ""
    lines = [
        f"curated v{rec['version']:04d}: +{len(added):,} of {count(m['candidates'])} new training items, "
        f"{len(rec['ids']):,} kept; {rec['objective']} = {number(rec['value'])}; held-out accuracy "
        f"{accuracy(rec['accuracy'])} on {count(n_test)} items{delta}",
        *([f"objective {why}"] if why else []),
        "added (id and class): " + ", ".join(pairs[:LIST_ADDITIONS]) + more,
        "per class: " + class_summary(counts, names),
    ]
    return "\n".join(lines)


def records_text(result: Mapping[str, Any]) -> str:
    """How to open the Prefect and MLflow UIs on what a night recorded, in lines that still work after the
    command ended: a temporary Prefect server (:func:`infra.dask.prefect_api`) stops with the command, so its
    records come with the command that serves them again (:func:`flows.runtime.prefect_lines`), and a local
    MLflow store with the ``mlflow ui`` command that opens it (:func:`tasks.track.ui_command`)."""
    from flows.runtime import prefect_lines
    from tasks.track import experiment_url, is_server, ui_command

    rec = result["record"]
    lines = ["", "Open the records:", *prefect_lines(result, rec.get("flow_run_id"))]  # the night that published
    uri, exp, run = rec.get("tracking_uri"), rec.get("mlflow_experiment_id"), rec.get("mlflow_run_id")
    if uri and exp:
        runs = experiment_url(uri, exp)
        night = f"{runs.split('#', 1)[0]}#/experiments/{exp}/runs/{run}"
        if is_server(uri):
            lines += [f"  MLflow:  {runs}"]
        else:
            lines += [f"  MLflow:  {ui_command(uri)} --host 127.0.0.1 --port 5000", f"           then {runs}"]
        lines += [f"           (the nights' metrics as columns; this night: {night})"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ output
def show(renderable: Any, *, console: Console | None = None) -> None:
    """Print a table (or any rich renderable) to stdout; to a pipe or file as plain text at the width it needs
    (unwrapped, no trailing blanks), so that ``grep`` and ``cut`` see one line per row."""
    con = console or Console()
    if console is not None or con.is_terminal:
        con.print(renderable)
        return
    head = ""
    if isinstance(renderable, Table) and renderable.title:  # rich wraps a title to its table's width: a line
        head, renderable = f"{renderable.title}\n", copy.copy(renderable)
        renderable.title = None
    width = max(80, Console(width=10_000).measure(renderable).maximum)
    con.file.write(head + text(renderable, width=width))
    con.file.flush()


def text(renderable: Any, width: int = 200) -> str:
    """What :func:`show` prints to a pipe, as plain text (no colour, no trailing blanks): for tests and logs."""
    con = Console(width=width, file=io.StringIO(), color_system=None)
    con.print(renderable)
    return "".join(line.rstrip() + "\n" for line in con.file.getvalue().splitlines())
