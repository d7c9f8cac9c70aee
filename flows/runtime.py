"""The one runtime seam of every flow: how a flow body runs its tasks, with Prefect or without, and how it starts.

A flow body is ``body(options, runtime)``: plain Python over :mod:`pipeline`, calling only the runtime for what
depends on where it runs —

- :meth:`Runtime.map` — the fan-out: jobs cut into batches (:mod:`pipeline.batch`), one task per batch, results
  yielded ``(job index, Outcome)`` as batches finish; a failed job is an outcome, so the map keeps going and the
  body decides (write what finished, fail at the end);
- :meth:`Runtime.call` — one task, waited for (a night's selection, its training); :meth:`Runtime.here` — one
  task in the flow's own process (the night's MLflow log);
- :meth:`Runtime.progress`, :meth:`Runtime.markdown`, :meth:`Runtime.table`, :meth:`Runtime.image` — Prefect
  artifacts, or a progress callback and nothing;
- :meth:`Runtime.subflow` — another flow's body (the night embeds its new items with the embed flow).

:class:`PrefectRuntime` submits to the flow's task runner (threads, a Dask cluster); :class:`InlineRuntime` runs
every batch in this process, one after another, and needs no Prefect server (``--runner inline``).

:func:`launch` is the one launcher: it runs the flow's plan (every input check) in the launching process first —
bad input is refused before any Prefect server, Dask cluster or MLflow starts, and nothing is written — then runs
the body inline, or the Prefect flow under one managed Prefect API (:func:`infra.dask.prefect_api`) for the
launcher and its workers. :func:`deployed` makes the one deployed wrapper of a flow (the cluster a parameter).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pipeline.batch import Outcome, jobs_per_task, split

#: ``progress(percent, *detail)``: detail is what the flow says of the step (the study: done, total, name, phase)
Progress = Callable[..., None]

#: The launcher's progress callback while :func:`launch` runs a Prefect flow in this process (the CLI's bar): the
#: flow's progress artifacts report to it as well, so a terminal sees progress under every runner, not inline only.
_launcher_progress: Progress | None = None


class Runtime:
    """What a flow body may ask of where it runs (see the module's docstring)."""

    def map(self, task, jobs: Sequence[Any], labels: Sequence[str] | None = None) -> Iterator[tuple[int, Outcome]]:
        raise NotImplementedError

    def call(self, task, *args: Any) -> Any:
        raise NotImplementedError

    def here(self, task, *args: Any) -> Any:
        """A task in the flow's own process (what writes its files or tracking from there)."""
        return getattr(task, "fn", task)(*args)

    def progress(self, key: str, total: int, description: str) -> Progress:
        return lambda pct, *detail: None

    def markdown(self, key: str, markdown: str, description: str) -> None:
        pass

    def table(self, key: str, table: list[dict], description: str) -> None:
        pass

    def image(self, key: str, url: str, description: str) -> None:
        """An image artifact (``url``: where the browser fetches it, a ``data:`` URL included)."""

    def subflow(self, flow, body: Callable, options: Any) -> Any:
        return body(options, self)

    def run_id(self) -> str | None:
        return None

    def run_url(self) -> str | None:
        """The flow run's page in the Prefect UI, where one is configured (``PREFECT_UI_URL``, or the API's)."""
        return None

    def slots(self) -> int:
        return 1


def _label(labels: Sequence[str] | None, group: list[int]) -> str:
    if labels is None:
        return f"jobs-{group[0]}-{group[-1]}" if len(group) > 1 else f"job-{group[0]}"
    return labels[group[0]] if len(group) == 1 else f"{labels[group[0]]}..{labels[group[-1]]}-{len(group)}-jobs"


class InlineRuntime(Runtime):
    """Every batch in this process, one after another; no Prefect. ``on_progress(pct)`` sees the progress."""

    def __init__(self, on_progress: Progress | None = None):
        self.on_progress = on_progress

    def map(self, task, jobs, labels=None):
        fn = getattr(task, "fn", task)
        for group in split(len(jobs), jobs_per_task(len(jobs), self.slots())):
            try:
                outs = fn([jobs[i] for i in group], _label(labels, group))
            except Exception as exc:  # a transient error, untried again here: every job of the batch failed
                outs = [Outcome(error=exc)] * len(group)
            yield from zip(group, outs)

    def call(self, task, *args):
        return getattr(task, "fn", task)(*args)

    def progress(self, key, total, description):
        return self.on_progress or (lambda pct, *detail: None)


class PrefectRuntime(Runtime):
    """Tasks on the flow's task runner; progress, summaries and tables as Prefect artifacts."""

    def slots(self) -> int:
        """Worker threads of the flow's task runner (a Dask cluster's, a thread pool's), else the CPU count."""
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        runner = ctx.task_runner if ctx else None
        try:
            from prefect_dask import DaskTaskRunner

            if isinstance(runner, DaskTaskRunner):
                return max(1, sum(runner.client.nthreads().values()))
        except ImportError:
            pass
        workers = getattr(runner, "_max_workers", None)
        return int(workers) if workers else (os.cpu_count() or 1)

    def map(self, task, jobs, labels=None):
        from prefect.futures import as_completed

        groups = split(len(jobs), jobs_per_task(len(jobs), self.slots()))
        futures = {}
        for group in groups:
            fut = task.submit([jobs[i] for i in group], _label(labels, group))
            futures[fut.task_run_id] = (fut, group)
        for fut in as_completed([f for f, _ in futures.values()]):
            group = futures[fut.task_run_id][1]
            try:
                outs = fut.result()
            except Exception as exc:  # the batch itself failed (a transient error, past its retries)
                outs = [Outcome(error=exc)] * len(group)
            yield from zip(group, outs)

    def call(self, task, *args):
        return task.submit(*args).result()

    def here(self, task, *args):
        return task(*args)

    def progress(self, key, total, description):
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        pid = create_progress_artifact(progress=0.0 if total else 100.0, key=key, description=description)
        listener = _launcher_progress

        def update(pct, *detail):
            update_progress_artifact(pid, pct)
            if listener is not None:
                listener(pct, *detail)

        return update

    def markdown(self, key, markdown, description):
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(markdown=markdown, key=key, description=description)

    def table(self, key, table, description):
        from prefect.artifacts import create_table_artifact

        create_table_artifact(table=table, key=key, description=description)

    def image(self, key, url, description):
        from prefect.artifacts import create_image_artifact

        create_image_artifact(image_url=url, key=key, description=description)

    def subflow(self, flow, body, options):
        """``flow`` as a subflow on a task runner of the same engine (a Dask client of the same cluster)."""
        runner = _sibling_runner()
        return (flow.with_options(task_runner=runner) if runner is not None else flow)(options)

    def run_id(self) -> str | None:
        from prefect.runtime import flow_run

        return str(flow_run.id) if flow_run.id else None

    def run_url(self) -> str | None:
        from prefect.utilities.urls import url_for

        run_id = self.run_id()
        return url_for("flow-run", obj_id=run_id) if run_id else None


def _sibling_runner():
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx else None
    if runner is None:
        return None
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        return runner.duplicate()
    if isinstance(runner, DaskTaskRunner):
        # ``client`` starts the flow's cluster now if no task has yet (prefect-dask starts it lazily): without
        # this the subflow's duplicate would start a second LocalCluster
        return DaskTaskRunner(address=runner.client.scheduler.address)
    return runner.duplicate()


def make_flow(body: Callable, options_type: type, *, name: str, description: str,
              run_name: Callable[[Any], str] | None = None):
    """The Prefect flow of ``body``: one parameter, ``options`` (the UI's run form), on a :class:`PrefectRuntime`.

    ``run_name(options)`` names each flow run after what it does (``curate-digits-v0002``) instead of Prefect's
    random two words; a name it cannot make (it raised) falls back to the flow's name."""
    from prefect import flow

    def run(options):
        return body(options, PrefectRuntime())

    run.__name__ = run.__qualname__ = name.replace("-", "_")
    run.__annotations__ = {"options": options_type, "return": dict[str, Any]}
    run.__module__ = body.__module__
    return flow(run, name=name, description=description, log_prints=True, validate_parameters=True,
                flow_run_name=_run_namer(run_name, options_type, name) if run_name else None)


def _run_namer(run_name: Callable[[Any], str], options_type: type, fallback: str) -> Callable[[], str]:
    def namer() -> str:
        from prefect.runtime import flow_run

        try:
            options = flow_run.parameters["options"]
            if isinstance(options, dict):
                options = options_type.model_validate(options)
            return run_name(options)
        except Exception:  # a name is a label: never a reason for the run to fail
            return fallback

    return namer


def launch(flow, body: Callable, plan: Callable, options: Any, spec=None, *, task_runner=None,
           on_progress: Progress | None = None, prepare: Callable | None = None) -> dict[str, Any]:
    """Run a flow: ``plan(options)`` here first (bad input raises before anything starts or is written; a
    scheduler address nothing answers at too: :func:`infra.dask.check_scheduler`; then ``prepare(plan)``, e.g. the tracking database made before any worker), then ``body`` inline (neither
    ``spec`` nor ``task_runner``) or ``flow`` on the cluster of ``spec`` / on ``task_runner`` under one managed
    Prefect API. The keyword arguments are those :func:`infra.dask.launch_target` returns."""
    from infra.dask import check_scheduler, prefect_api, task_runner as runner_for

    if spec is not None and task_runner is not None:
        raise ValueError("give spec (a ClusterSpec) or task_runner, not both")
    planned = plan(options)
    check_scheduler(spec)  # a scheduler address nothing answers at: refused in seconds, before anything starts
    if prepare is not None:
        prepare(planned)
    if spec is None and task_runner is None:
        return body(options, InlineRuntime(on_progress))
    global _launcher_progress
    with prefect_api():  # one server for the launcher and its workers, never orphaned by a kill -9
        _launcher_progress = on_progress
        try:
            return flow.with_options(task_runner=task_runner or runner_for(spec))(options)
        finally:
            _launcher_progress = None


def deployed(launcher: Callable, options_type: type, *, name: str, description: str):
    """The deployed wrapper of a flow: ``(options, cluster)``, the cluster (:class:`infra.dask.ClusterOptions`) a
    parameter of the deployment, never written into flow code; ``launcher(options, **cluster.launch())``."""
    from prefect import flow

    from infra.dask import ClusterOptions

    def run(options, cluster=ClusterOptions()):
        return launcher(options, **cluster.launch())

    run.__name__ = run.__qualname__ = name.replace("-", "_")
    run.__annotations__ = {"options": options_type, "cluster": ClusterOptions, "return": dict[str, Any]}
    run.__module__ = launcher.__module__
    return flow(run, name=name, description=description, log_prints=True, validate_parameters=True)
