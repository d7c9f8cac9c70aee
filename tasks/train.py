"""Prefect tasks of the appraisal study: one line each over :mod:`pipeline.study` (batched, :mod:`pipeline.batch`)."""

from pipeline.batch import batched
from pipeline.study import run_subset_job
from tasks._task import worth_task

subset_jobs = worth_task(batched(run_subset_job), name="subset-job", task_run_name="subset-{label}")
