"""The ``worth`` command, one module per command group.

:mod:`cli.main` builds the command and registers each group; :mod:`cli.core` holds the commands that need only
the core library (``select --input``, ``score``, ``objectives``); :mod:`cli.store` the embedding store
(``embed``, ``info``); :mod:`cli.params` the ``KEY=VALUE`` and input readers they share. Commands import
Prefect, Dask and Zarr inside their bodies, so ``worth objectives`` stays quick.
"""
