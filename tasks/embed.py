"""Prefect tasks of the embed flow: one line over :mod:`pipeline.embed` (batched, :mod:`pipeline.batch`)."""

from pipeline.batch import batched
from pipeline.embed import run_shard
from tasks._task import worth_task

embed_shards = worth_task(batched(run_shard), name="embed-shard", task_run_name="embed-{label}")
