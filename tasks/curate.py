"""Prefect tasks of the nightly curation: one line each over :mod:`pipeline.curate`."""

from pipeline import curate as _curate
from tasks._task import worth_task

select_additions = worth_task(_curate.select_additions, name="select-additions")
train_evaluate = worth_task(_curate.train_evaluate, name="train-evaluate")
