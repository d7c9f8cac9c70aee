"""Trigger one night of the curate-nightly deployment and wait for it (run in a subprocess, so that
PREFECT_API_URL is set before Prefect is imported). Prints ``{state: ..., flow_run_id: ...}`` on its last line."""

import json
import os
import sys

from prefect.deployments import run_deployment

store, limit = sys.argv[1], int(sys.argv[2]) or None
options = {"pool": {"source": "digits", "store": store, "limit": limit, "chunk_rows": 256}, "k": 20, "epochs": 10,
           "tracking_uri": os.environ["MLFLOW_TRACKING_URI"]}  # the run form nests the embed options (issue 18)
run = run_deployment("curate-nightly/curate-nightly", parameters={"options": options, "cluster": {"runner": "threads"}},
                     timeout=840)
print(json.dumps({"state": run.state.type.value, "flow_run_id": str(run.id)}))
