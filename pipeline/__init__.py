"""The pipeline's library: plain Python between ``tasks/`` and ``worth/`` + ``storage/``, free of Prefect and Dask.

Each flow has a module here holding its options, its plan (every input check, run before anything starts), its
jobs (what one task computes) and its records (manifests, run params, summaries). ``tasks/`` wraps the job
functions as Prefect tasks in one line each; ``flows/`` runs them through one runtime (:mod:`flows.runtime`).
Everything here is importable and testable without Prefect: the inline runner calls it directly.
"""
