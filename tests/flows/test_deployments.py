"""prefect.yaml: every deployment's entrypoint loads and its parameters validate against the flow."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_entrypoint_and_parameters(deployment, monkeypatch):
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    validated = flow.validate_parameters(deployment.get("parameters", {}))
    assert set(validated) == set(deployment.get("parameters", {}))
    assert deployment["work_pool"]["name"]
    for schedule in deployment.get("schedules", []):
        assert len(schedule["cron"].split()) == 5
