"""Prefect tasks of the appraisal study: one line each over :mod:`pipeline.study` (batched, :mod:`pipeline.batch`)."""

from pipeline.batch import batched
from pipeline.study import run_fill_job, run_path_job, run_score_job, run_train_job
from tasks._task import worth_task

path_jobs = worth_task(batched(run_path_job), name="path-job", task_run_name="paths-{label}")
fill_jobs = worth_task(batched(run_fill_job), name="fill-job", task_run_name="fills-{label}")
score_jobs = worth_task(batched(run_score_job), name="score-job", task_run_name="scores-{label}")
train_jobs = worth_task(batched(run_train_job), name="train-job", task_run_name="train-{label}")
