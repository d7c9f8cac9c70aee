"""The ``worth`` command, one module per command group.

:mod:`flows.cli.main` builds the command and registers each group; :mod:`flows.cli.core` holds the commands that need only
the core library (``select --input``, ``score``, ``objectives``); :mod:`flows.cli.store` the embedding store
(``embed``, ``info``); :mod:`flows.cli.params` the ``KEY=VALUE`` and input readers they share. Commands import
Prefect, Dask and Zarr inside their bodies, so ``worth objectives`` stays quick.
"""
