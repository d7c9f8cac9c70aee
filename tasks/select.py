"""Prefect tasks of the select flow: one line each over :mod:`pipeline.select` (batched, :mod:`pipeline.batch`)."""

from pipeline.batch import batched
from pipeline.select import hold_batch_rows, run_merge_job, run_select_job
from tasks._task import worth_task

select_jobs = worth_task(batched(run_select_job, hold_batch_rows), name="select-job", task_run_name="select-{label}")
merge_jobs = worth_task(batched(run_merge_job), name="merge-job", task_run_name="merge-{label}")
