"""``python -m flows FLOW OPTIONS.json [--runner dask|threads|inline] [--workers N] [--scheduler ADDR]``.

The one ``__main__`` guard of the flows (Dask's worker processes re-import the main module; code that starts a
cluster must sit behind this guard): the options are the flow's options object as JSON, the cluster a choice
as in the deployments (:class:`infra.dask.ClusterOptions`, default a Dask LocalCluster).
"""

from __future__ import annotations

import argparse
import importlib
import json

FLOWS = {"embed": ("flows.embed", "EmbedOptions", "run_embed"),
         "select": ("flows.select", "SelectOptions", "run_select"),
         "study": ("flows.study", "StudyOptions", "run_study"),
         "curate": ("flows.curate", "CurateOptions", "run_curate")}


def main(argv: list[str] | None = None) -> dict:
    from infra.dask import ClusterOptions

    parser = argparse.ArgumentParser(prog="python -m flows", description=__doc__.splitlines()[0])
    parser.add_argument("flow", choices=sorted(FLOWS))
    parser.add_argument("options", help="the flow's options as a JSON file")
    parser.add_argument("--runner", default="dask", choices=("dask", "threads", "inline"))
    parser.add_argument("--workers", type=int)
    parser.add_argument("--scheduler")
    args = parser.parse_args(argv)
    module, options_name, launcher = FLOWS[args.flow]
    mod = importlib.import_module(module)
    with open(args.options) as f:
        options = getattr(mod, options_name).model_validate_json(f.read())
    cluster = ClusterOptions(runner=args.runner, workers=args.workers, scheduler=args.scheduler)
    return getattr(mod, launcher)(options, **cluster.launch())


if __name__ == "__main__":
    print(json.dumps(main(), indent=2, default=str))
