"""The study's figures (PNG, matplotlib's Agg backend, imported lazily) and its markdown report.

Every function takes the results table (a list of dicts) or a table made from it, and an output directory,
and returns the paths it wrote, so a flow can log them as artifacts.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .correlate import groups

STYLE = {  # kind → (colour, marker, label)
    "random": ("#9e9e9e", "o", "random"),
    "max": ("#d62728", "*", "maximiser"),
    "mix": ("#1f77b4", "s", "mixture"),
    "min": ("#2ca02c", "v", "minimiser"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_figures(rows: list[dict], objectives, out_dir) -> list[Path]:
    """Score vs accuracy, one panel per objective, one PNG per (regime, k); subsets marked by kind.

    In each panel the maximiser and the mixtures/minimiser *of that panel's objective* are drawn in colour,
    the other objectives' optimised subsets in light outline: one sees both the objective's own range and
    where the others' selections fall on its axis.
    """
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    objectives = list(objectives)
    for (regime, k), grp in groups(rows).items():
        cols = min(3, len(objectives))
        nrows = math.ceil(len(objectives) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
        for ax, obj in zip(axes.flat, objectives):
            for kind, (colour, marker, label) in STYLE.items():
                own = [r for r in grp if r["kind"] == kind and (kind == "random" or r["objective"] == obj)]
                other = [r for r in grp if r["kind"] == kind and kind != "random" and r["objective"] != obj]
                if other:
                    ax.scatter([r[f"score.{obj}"] for r in other], [r["accuracy"] for r in other], s=22,
                               marker=marker, facecolors="none", edgecolors=colour, alpha=0.35, linewidths=0.8)
                if own:
                    ax.scatter([r[f"score.{obj}"] for r in own], [r["accuracy"] for r in own], s=60 if kind == "max"
                               else 28, marker=marker, color=colour, label=label, alpha=0.9)
            ax.set_title(obj, fontsize=10)
            ax.set_xlabel("score")
            ax.set_ylabel("held-out accuracy")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(objectives):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7, loc="best")
        fig.suptitle(f"score vs accuracy — regime {regime}, k = {k} (hollow: other objectives' subsets)")
        fig.tight_layout()
        path = out_dir / f"scatter-{regime}-k{k}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def accuracy_vs_k_figure(rows: list[dict], objectives, out_dir) -> Path:
    """Accuracy of each objective's maximiser against k (one panel per regime), random subsets' mean ± std."""
    plt = _pyplot()
    regimes = list(dict.fromkeys(r["regime"] for r in rows))
    fig, axes = plt.subplots(1, len(regimes), figsize=(4.5 * len(regimes), 3.6), squeeze=False)
    for ax, regime in zip(axes.flat, regimes):
        sub = [r for r in rows if r["regime"] == regime]
        ks = sorted({int(r["k"]) for r in sub})
        rand = [[r["accuracy"] for r in sub if r["kind"] == "random" and r["k"] == k] for k in ks]
        if all(rand):
            mean = np.array([np.mean(a) for a in rand])
            std = np.array([np.std(a) for a in rand])
            ax.plot(ks, mean, color="#9e9e9e", label="random (mean ± std)")
            ax.fill_between(ks, mean - std, mean + std, color="#9e9e9e", alpha=0.25)
        for obj in objectives:
            acc = [np.mean([r["accuracy"] for r in sub if r["kind"] == "max" and r["objective"] == obj
                            and r["k"] == k] or [math.nan]) for k in ks]
            ax.plot(ks, acc, marker="o", label=obj)
        ax.set_title(f"regime {regime}")
        ax.set_xlabel("k")
        ax.set_ylabel("held-out accuracy")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(out_dir) / "accuracy-vs-k.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def heatmap_figure(corr: list[dict], out_dir, subsets: str = "all", stat: str = "spearman") -> Path:
    """The correlation table as a heat map: objectives × (regime, k), annotated, diverging colours in [−1, 1]."""
    plt = _pyplot()
    table = [c for c in corr if c["subsets"] == subsets]
    objectives = list(dict.fromkeys(c["objective"] for c in table))
    columns = list(dict.fromkeys((c["regime"], c["k"]) for c in table))
    grid = np.full((len(objectives), len(columns)), np.nan)
    for c in table:
        grid[objectives.index(c["objective"]), columns.index((c["regime"], c["k"]))] = c[stat]
    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 2.5, 0.5 * len(objectives) + 1.8))
    im = ax.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(columns)), [f"{r}\nk={k}" for r, k in columns], fontsize=8)
    ax.set_yticks(range(len(objectives)), objectives, fontsize=8)
    for i in range(len(objectives)):
        for j in range(len(columns)):
            ax.text(j, i, "–" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label=stat)
    ax.set_title(f"{stat} of score vs accuracy ({subsets} subsets)")
    fig.tight_layout()
    path = Path(out_dir) / f"heatmap-{stat}-{subsets}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def path_figure(path_rows: list[dict], out_dir) -> list[Path]:
    """Accuracy against score along each objective's mixture series, one PNG per (regime, k)."""
    plt = _pyplot()
    paths = []
    for (regime, k), grp in groups(path_rows).items():
        objectives = list(dict.fromkeys(p["objective"] for p in grp))
        fig, axes = plt.subplots(1, len(objectives), figsize=(4 * len(objectives), 3.3), squeeze=False)
        for ax, obj in zip(axes.flat, objectives):
            for filler, style in (("random", "-o"), ("min", "--v")):
                pts = sorted((p for p in grp if p["objective"] == obj and p["filler"] == filler),
                             key=lambda p: p["share"])
                if pts:
                    ax.plot([p["score"] for p in pts], [p["accuracy"] for p in pts], style, label=f"filler {filler}")
                    for p in pts:
                        ax.annotate(f"{p['share']:.2g}", (p["score"], p["accuracy"]), fontsize=6)
            ax.set_title(obj, fontsize=10)
            ax.set_xlabel("score (labels: share of maximiser picks)")
            ax.set_ylabel("held-out accuracy")
            ax.grid(alpha=0.3)
        axes.flat[0].legend(fontsize=7)
        fig.tight_layout()
        p = Path(out_dir) / f"path-{regime}-k{k}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def _fmt(v, digits: int = 3) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _md_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_report(rows, tables: dict, figures: dict, out_dir, *, title: str = "Appraisal study",
                 config: dict | None = None) -> Path:
    """``report.md`` in ``out_dir``: per regime, the correlation, spread and path tables and the figures."""
    out_dir = Path(out_dir)
    corr, spread, path, stops = tables["correlation"], tables["spread"], tables["path"], tables["stops_paying"]
    lines = [f"# {title}", "",
             f"{len(rows)} subsets trained and evaluated. Rank correlations are per regime and size k, with 95% "
             "bootstrap percentile intervals; `moderate` = scores between the random subsets' 10th percentile and "
             "halfway from their 90th percentile to the objective's maximiser (docs/appraisal.md).", ""]
    if tables.get("verdicts"):
        from .verdicts import verdict_lines

        lines += verdict_lines(tables["verdicts"])
    if tables.get("ranking"):
        lines += ["## Ranking: best predictor of held-out accuracy first", "",
                  "Mean Spearman ρ over the (regime, k) groups, all subsets (`worth curate --objective auto` "
                  "follows the first that can tell items apart: not the scaling law, a function of size).", "",
                  _md_table(tables["ranking"], ["rank", "objective", "spearman", "kendall", "groups"]), ""]
    if "coreset" in tables:
        lines += coreset_section(tables["coreset"], tables["coreset_headline"])
    lines += ["## Correlation heat maps", ""]
    lines += [f"![{p.stem}]({p.name})" for p in figures.get("heatmaps", [])]
    lines += ["", f"![accuracy vs k]({figures['accuracy_vs_k'].name})", ""]
    for regime in dict.fromkeys(r["regime"] for r in rows):
        lines += [f"## Regime `{regime}`", "", "### Rank correlation of score with held-out accuracy", ""]
        cr = [dict(c, spearman_ci=f"[{_fmt(c['spearman_lo'], 2)}, {_fmt(c['spearman_hi'], 2)}]",
                   kendall_ci=f"[{_fmt(c['kendall_lo'], 2)}, {_fmt(c['kendall_hi'], 2)}]")
              for c in corr if c["regime"] == regime]
        lines += [_md_table(cr, ["k", "objective", "subsets", "n", "spearman", "spearman_ci", "kendall",
                                 "kendall_ci"]), ""]
        lines += ["### Spread: random against optimised subsets (coefficient of variation)", ""]
        sp = [s for s in spread if s["regime"] == regime]
        cv_cols = [c for c in (sp[0] if sp else {}) if c.startswith("cv.")]
        lines += [_md_table(sp, ["k", "subsets", "n", "mean.accuracy", *cv_cols, "range.accuracy.all"]), ""]
        lines += ["### Along each objective's mixture series (share of maximiser picks)", ""]
        lines += [_md_table([p for p in path if p["regime"] == regime],
                            ["k", "objective", "filler", "share", "n", "score", "accuracy"]), ""]
        lines += ["Where accuracy peaks along each series (`drop` > 0: the maximiser is worse than the peak):", ""]
        lines += [_md_table([s for s in stops if s["regime"] == regime],
                            ["k", "objective", "filler", "peak_share", "peak_accuracy", "drop"]), ""]
        lines += ["### Figures", ""]
        lines += [f"![{p.stem}]({p.name})" for p in figures.get("scatter", []) + figures.get("path", [])
                  if f"-{regime}-" in p.name]
        lines += [""]
    if config is not None:
        lines += ["## Configuration", "", "```json", __import__("json").dumps(config, indent=1), "```", ""]
    path_md = out_dir / "report.md"
    path_md.write_text("\n".join(lines))
    return path_md


def coreset_section(table: list[dict], headline: list[dict]) -> list[str]:
    """The report's coreset section: the headline per fraction, then accuracy mean ± sd per selection."""
    from .coreset_table import headline_sentences

    lines = ["## Coreset table: does the selection beat what users pick instead?", "",
             "Held-out accuracy mean ± sd over the training seeds, per share of the pool. Selections are "
             "class-balanced (at most ⌈k/C⌉ per class, `worth.select(quotas='balanced')`; balanced random draws "
             "k // C per class); uniform random is not balanced; margin = mean and sd of the per-seed difference from uniform "
             "random (a new random draw per seed).", ""]
    lines += headline_sentences(headline) + [""]
    cells = [dict(c, share=("full pool" if c["selection"] == "full" else f"{c['fraction'] * 100:g} %"),
                  selection=c["selection"] + (" †" if c.get("item_blind") else ""),
                  accuracy=f"{_fmt(c['mean'], 4)} ± {_fmt(c['sd'], 4)}") for c in table]
    lines += [_md_table(cells, ["share", "k", "selection", "n", "accuracy"]), ""]
    if any(c.get("item_blind") for c in table):
        lines += ["† cannot tell items apart (a function of the subset's size and class counts): its maximiser "
                  "takes the first rows of each class in store order, one class-balanced draw trained per seed — "
                  "compare it with `balanced-random`, not with the selections.", ""]
    return lines


def _inline(text: str) -> str:
    import html
    import re

    out = html.escape(text, quote=False)
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", out)


def markdown_to_html(markdown: str, out_dir, *, title: str = "report") -> str:
    """The report's markdown as one self-contained HTML page, every ``![alt](file.png)`` embedded as a base64
    ``<img>`` (MLflow's artifact viewer does not resolve relative image links in markdown, mlflow PR #20003).

    Renders what :func:`write_report` writes — headings, tables, lists, fenced code, images, paragraphs — with
    no dependency; anything else passes through as an escaped paragraph.
    """
    import base64
    import html
    import re

    out_dir = Path(out_dir)
    body, table, code, para = [], [], None, []

    def flush_para():
        if para:
            body.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    def flush_table():
        if table:
            head, *rest = table
            cells = lambda row, tag: "".join(f"<{tag}>{_inline(c.strip())}</{tag}>" for c in row)  # noqa: E731
            body.append("<table><thead><tr>" + cells(head, "th") + "</tr></thead><tbody>"
                        + "".join("<tr>" + cells(r, "td") + "</tr>" for r in rest) + "</tbody></table>")
            table.clear()

    for line in markdown.splitlines():
        if code is not None:
            if line.startswith("```"):
                body.append("<pre><code>" + html.escape("\n".join(code)) + "</code></pre>")
                code = None
            else:
                code.append(line)
            continue
        if line.startswith("```"):
            flush_para(), flush_table()
            code = []
            continue
        if line.startswith("|"):
            flush_para()
            cells = line.strip().strip("|").split("|")
            if not all(set(c.strip()) <= set("-:") for c in cells):
                table.append(cells)
            continue
        flush_table()
        image = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", line.strip())
        heading = re.match(r"(#{1,6}) (.*)", line)
        if image:
            flush_para()
            alt, src = image.groups()
            path = out_dir / src
            if path.is_file() and path.suffix.lower() == ".png":
                data = base64.b64encode(path.read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/></figure>')
            else:
                body.append(f"<p>[missing figure {html.escape(src)}]</p>")
        elif heading:
            flush_para()
            n = len(heading.group(1))
            body.append(f"<h{n}>{_inline(heading.group(2))}</h{n}>")
        elif line.startswith("- "):
            flush_para()
            body.append(f"<ul><li>{_inline(line[2:])}</li></ul>")
        elif not line.strip():
            flush_para()
        else:
            para.append(line.strip())
    flush_para(), flush_table()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{max-width:100%}pre{background:#f4f4f4;padding:1em;overflow:auto}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>")


def write_html(report_md: Path) -> Path:
    """``report.html`` beside ``report.md``, the figures embedded (:func:`markdown_to_html`)."""
    report_md = Path(report_md)
    text = report_md.read_text()
    title = text.splitlines()[0].lstrip("# ") if text else "report"
    path = report_md.with_suffix(".html")
    path.write_text(markdown_to_html(text, report_md.parent, title=title))
    return path
