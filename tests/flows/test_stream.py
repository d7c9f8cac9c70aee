"""The runtime's stream (flows/runtime.py): jobs submitted while results are read, every job's outcome once, the
higher priority first — inline, on Prefect's thread pool, and on the session's real Dask LocalCluster (where the
priority reaches the scheduler)."""

from __future__ import annotations

import pytest

from flows.runtime import InlineRuntime, PrefectRuntime
from pipeline.batch import batched


def _square(job):
    if job < 0:
        raise ValueError(f"negative job {job}")
    return job * job


square_batch = batched(_square)


def _drain(runtime, task, first, more):
    """Submit ``first`` (priority 0), and for each outcome of it the jobs ``more[job]`` (priority 1)."""
    stream = runtime.stream()
    seen = []
    subs = {stream.submit(task, first): first}
    for sid, i, out in stream:
        job = subs[sid][i]
        seen.append((job, out.value if out.ok else repr(out.error)))
        if job in more:
            subs[stream.submit(task, more[job], priority=1)] = more[job]
    return seen


FIRST = [1, 2, -3, 4]
MORE = {2: [5, 6], 4: [7]}
WANT = {(1, 1), (2, 4), (-3, "ValueError('negative job -3')"), (4, 16), (5, 25), (6, 36), (7, 49)}


def test_inline_every_outcome_once_higher_priority_first():
    seen = _drain(InlineRuntime(), square_batch, FIRST, MORE)
    assert sorted(seen, key=str) == sorted(WANT, key=str) and len(seen) == len(WANT)
    # one job per batch here: after job 2, its priority-1 follow-ups run before the rest of the first submission
    order = [job for job, _ in seen]
    assert order.index(5) < order.index(-3) and order.index(6) < order.index(-3)


def test_inline_map_is_a_stream_of_one_submission():
    got = dict(InlineRuntime().map(square_batch, [3, -1, 2]))
    assert got[0].value == 9 and got[2].value == 4 and isinstance(got[1].error, ValueError)


def _in_flow(task_runner, body):
    from prefect import flow

    @flow(task_runner=task_runner)
    def go():
        return body(PrefectRuntime())

    return go()


def test_threads_every_outcome_once(prefect_api):
    from prefect import task
    from prefect.task_runners import ThreadPoolTaskRunner

    square_task = task(square_batch, name="square", retries=0)
    seen = _in_flow(ThreadPoolTaskRunner(max_workers=2), lambda runtime: _drain(runtime, square_task, FIRST, MORE))
    assert sorted(seen, key=str) == sorted(WANT, key=str) and len(seen) == len(WANT)


def _priority_here(job):
    """The priority the Dask scheduler gave the task running this job (read on the worker)."""
    from distributed import get_worker
    from distributed.worker import thread_state

    return job, get_worker().state.tasks[thread_state.key].priority


priority_batch = batched(_priority_here)


def test_dask_priority_reaches_the_scheduler(dask_task_runner):
    """Submissions carry their priority to the Dask scheduler (its tuple's first field is minus the user's
    priority: smaller runs first), and every outcome comes back."""
    from prefect import task

    def body(runtime):
        job_task = task(priority_batch, name="priority", retries=0)
        stream = runtime.stream()
        stream.submit(job_task, [1, 2], priority=0)
        stream.submit(job_task, [3], priority=3)
        return [out.value for _, _, out in stream]

    got = dict(_in_flow(dask_task_runner, body))
    assert sorted(got) == [1, 2, 3]
    assert got[1][0] == 0 and got[2][0] == 0 and got[3][0] == -3


@pytest.mark.parametrize("priority", [0, 2])
def test_inline_priority_orders_batches_of_one_submission_among_others(priority):
    stream = InlineRuntime().stream()
    low = stream.submit(square_batch, [1, 2, 3])
    other = stream.submit(square_batch, [4], priority=priority)
    order = [(sid, i) for sid, i, _ in stream]
    assert order.index((other, 0)) == (0 if priority > 0 else 3)
    assert [i for sid, i in order if sid == low] == [0, 1, 2]
