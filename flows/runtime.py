"""The one runtime seam of every flow: how a flow body runs its tasks, with Prefect or without, and how it starts.

A flow body is ``body(options, runtime)``: plain Python over :mod:`pipeline`, calling only the runtime for what
depends on where it runs —

- :meth:`Runtime.map` — the fan-out: jobs cut into batches (:mod:`pipeline.batch`), one task per batch, results
  yielded ``(job index, Outcome)`` as batches finish; a failed job is an outcome, so the map keeps going and the
  body decides (write what finished, fail at the end);
- :meth:`Runtime.stream` — the same fan-out for work that arrives while results are read (a pipeline: the
  study submits a subset's training as soon as the path it is cut from is in); each submission has a
  priority, so the long poles run first and no phase waits for the slowest job of the one before;
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

import heapq
import os
import queue
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pipeline.batch import Outcome, jobs_per_task, split

#: ``progress(percent, *detail)``: detail is what the flow says of the step (the study: done, total, name, phase)
Progress = Callable[..., None]

#: The launcher's progress callback while :func:`launch` runs a Prefect flow in this process (the CLI's bar): the
#: flow's progress artifacts report to it as well, so a terminal sees progress under every runner, not inline only.
_launcher_progress: Progress | None = None


class Stream:
    """Batches submitted while results are read: :meth:`submit` cuts jobs into batches (one task each, as
    :meth:`Runtime.map` does) and returns the submission's id; iterating yields ``(submission id, job index,
    Outcome)`` as batches finish, for as long as any is pending — the loop's body may submit more.

    ``priority``: a higher number runs first among the batches waiting for a slot (a Dask cluster's scheduler
    queue; in order here, inline), submissions of equal priority in the order they were made.
    """

    def __init__(self, slots: int):
        self.slots = slots
        self._count = 0
        self._pending = 0

    def submit(self, task, jobs: Sequence[Any], labels: Sequence[str] | None = None, *, priority: int = 0) -> int:
        sid = self._count
        self._count += 1
        for group in split(len(jobs), jobs_per_task(len(jobs), self.slots)):
            self._pending += 1
            self._start(task, [jobs[i] for i in group], _label(labels, group), priority, (sid, group))
        return sid

    def pending(self) -> int:
        """Batches submitted and not yet yielded."""
        return self._pending

    def __iter__(self) -> Iterator[tuple[int, int, Outcome]]:
        while self._pending:
            (sid, group), outs = self._next()
            self._pending -= 1
            for i, out in zip(group, outs):
                yield sid, i, out

    def _start(self, task, batch: list, label: str, priority: int, tag) -> None:
        raise NotImplementedError

    def _next(self) -> tuple[Any, list[Outcome]]:
        raise NotImplementedError


def _outcomes(run: Callable[[], list[Outcome]], n: int) -> list[Outcome]:
    """A batch's outcomes; a batch that itself failed (a transient error, past its retries) fails every job."""
    try:
        return run()
    except Exception as exc:
        return [Outcome(error=exc)] * n


class _InlineStream(Stream):
    """Batches run here, one at a time, the highest priority first (then the order they were submitted in)."""

    def __init__(self, slots: int):
        super().__init__(slots)
        self._queue: list = []
        self._order = 0

    def _start(self, task, batch, label, priority, tag):
        self._order += 1  # unique: ties of priority go by submission, and the heap never compares the rest
        heapq.heappush(self._queue, (-priority, self._order, getattr(task, "fn", task), batch, label, tag))

    def _next(self):
        *_, fn, batch, label, tag = heapq.heappop(self._queue)
        return tag, _outcomes(lambda: fn(batch, label), len(batch))


class _PrefectStream(Stream):
    """Batches as tasks on the flow's task runner; finished ones handed over by the futures' callbacks."""

    def __init__(self, slots: int):
        super().__init__(slots)
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        # every future held until the stream ends, as a map holds its own: a worker lost meanwhile has its
        # finished keys recomputed by Dask, and answered from the task-run cache (tasks/_task.py), not run again
        self._futures: list = []

    def _start(self, task, batch, label, priority, tag):
        import dask

        with dask.annotate(priority=priority):  # the Dask scheduler's queue order (other runners: submission order)
            fut = task.submit(batch, label)
        self._futures.append(fut)
        fut.add_done_callback(lambda f, tag=tag, n=len(batch): self._done.put((tag, f, n)))

    def _next(self):
        tag, fut, n = self._done.get()
        return tag, _outcomes(fut.result, n)


class Runtime:
    """What a flow body may ask of where it runs (see the module's docstring)."""

    def map(self, task, jobs: Sequence[Any], labels: Sequence[str] | None = None) -> Iterator[tuple[int, Outcome]]:
        """``jobs`` in batches, ``(job index, Outcome)`` as batches finish: a :meth:`stream` of one submission."""
        stream = self.stream()
        stream.submit(task, jobs, labels)
        for _, i, out in stream:
            yield i, out

    def stream(self) -> Stream:
        raise NotImplementedError

    def call(self, task, *args: Any, name: str | None = None) -> Any:
        """One task on the flow's task runner; ``name``: its run's name in the UI (what it did, e.g.
        ``train-evaluate-v0002``), else Prefect's ``TASK-abc``."""
        raise NotImplementedError

    def here(self, task, *args: Any, name: str | None = None) -> Any:
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

    def reopen_command(self) -> str | None:
        """The command that serves :meth:`run_url` again once this command has ended (its Prefect server was a
        temporary one), or None (no Prefect, or a server that outlives the command)."""
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

    def stream(self):
        return _InlineStream(self.slots())

    def call(self, task, *args, name=None):
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

    def stream(self):
        return _PrefectStream(self.slots())

    def call(self, task, *args, name=None):
        return (task.with_options(task_run_name=name) if name else task).submit(*args).result()

    def here(self, task, *args, name=None):
        return (task.with_options(task_run_name=name) if name else task)(*args)

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
        """The flow run's page (:func:`flow_run_links`: under a launcher's temporary server, on the server that
        serves its records again — the temporary one stops with the command)."""
        run_id = self.run_id()
        return flow_run_links(run_id)["flow_run_url"] if run_id else None

    def reopen_command(self) -> str | None:
        run_id = self.run_id()
        return flow_run_links(run_id)["prefect_reopen"] if run_id else None


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
            result = flow.with_options(task_runner=task_runner or runner_for(spec))(options)
        finally:
            _launcher_progress = None
        if isinstance(result, dict) and result.get("flow_run_id"):  # known only while the server serves
            result.update(flow_run_links(str(result["flow_run_id"])))
        return result


def flow_run_links(run_id: str) -> dict[str, str | None]:
    """Where flow run ``run_id`` can be seen once the command has ended: ``{"flow_run_url", "prefect_reopen"}``.
    Under a launcher's temporary server (:func:`infra.dask.prefect_reopen`) the page on the server that serves its
    records again, and the command that starts that server; else the configured server's own page and None."""
    from prefect.utilities.urls import url_for

    from infra.dask import prefect_reopen

    reopen = prefect_reopen()
    if reopen:
        return {"flow_run_url": f"{reopen['ui']}/runs/flow-run/{run_id}", "prefect_reopen": reopen["command"]}
    return {"flow_run_url": url_for("flow-run", obj_id=run_id), "prefect_reopen": None}


def prefect_lines(result: dict[str, Any], run_id: str | None = None) -> list[str]:
    """The lines a command prints to reach a flow run of ``result`` (a :func:`launch` result; ``run_id``: another
    run of the same server, e.g. the one that published a version): none when the flow ran inline."""
    url, current = result.get("flow_run_url"), result.get("flow_run_id")
    if not url or not current:
        return []
    page = url.replace(str(current), str(run_id or current))
    if result.get("prefect_reopen"):
        return [f"  Prefect: {result['prefect_reopen']}", f"           then {page}"]
    return [f"  Prefect: {page}"]


def deployed(launcher: Callable, options_type: type, *, name: str, description: str,
             run_name: Callable[[Any], str] | None = None):
    """The deployed wrapper of a flow: ``(options, cluster)``, the cluster (:class:`infra.dask.ClusterOptions`) a
    parameter of the deployment, never written into flow code; ``launcher(options, **cluster.launch())``. Its
    runs are named by ``run_name`` as the flow's own (:func:`make_flow`): the UI shows ``curate-digits-v0002``
    over ``curate-digits-v0002``, not Prefect's random two words over it."""
    from prefect import flow

    from infra.dask import ClusterOptions

    def run(options, cluster=ClusterOptions()):
        return launcher(options, **cluster.launch())

    run.__name__ = run.__qualname__ = name.replace("-", "_")
    run.__annotations__ = {"options": options_type, "cluster": ClusterOptions, "return": dict[str, Any]}
    run.__module__ = launcher.__module__
    return flow(run, name=name, description=description, log_prints=True, validate_parameters=True,
                flow_run_name=_run_namer(run_name, options_type, name) if run_name else None)
