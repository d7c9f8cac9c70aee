"""``worth select`` (both modes), ``worth selections`` (list, export), and a kill -9 of the flow's process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import render
from tests.helpers import kill_9_when
from flows.cli.main import app
from storage import manifest as mf

runner = CliRunner()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_select_store_inline_then_list_and_export(digits_store, tmp_path):
    args = ["select", "--store", digits_store, "--name", "pc", "--regime", "per-class", "--quotas", "2",
            "--objective", "logdet", "--runner", "inline"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    path = os.path.join(digits_store, "selections", "pc", "v0001.json")
    assert f"pc v1: wrote {path}" in res.output and "Prefect:" not in res.output  # inline: no flow run
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "exists (same job key, skipped)" in again.output
    man = mf.read_manifest(digits_store, "pc")

    listed = runner.invoke(app, ["selections", "--store", digits_store])
    assert listed.exit_code == 0
    header, rule, row = listed.output.splitlines()  # a rendered table: header, rule, one row per manifest
    assert header.split() == ["name", "version", "regime", "objective", "k", "value", "created"]
    assert set(rule) == {"─"}
    assert row.split() == ["pc", "v1", "per-class", "logdet", "20", render.number(man["value"]),
                           *render.when(man["created"]).split()]
    for fmt in ("npy", "txt"):
        out = tmp_path / f"ids.{fmt}"
        res = runner.invoke(app, ["selections", "--store", digits_store, "--export", "pc@v1", "--out", str(out)])
        assert res.exit_code == 0, res.output
        got = np.load(out).tolist() if fmt == "npy" else out.read_text().splitlines()
        assert got == sorted(man["picks"]["ids"]) and len(got) == 20


@pytest.mark.parametrize("args, match", [
    (["select", "--k", "3"], "exactly one of --input FILE"),
    (["select", "--input", "digits", "--store", "S", "--k", "3"], "exactly one of --input FILE"),
    (["select", "--store", "STORE", "--k", "3"], "exactly one of --name"),
    (["select", "--store", "STORE", "--name", "a", "--k", "3", "--regime", "weird"], "regime"),
    (["select", "--store", "STORE", "--name", "../a", "--k", "3", "--runner", "inline"], "safe path component"),
    (["select", "--store", "STORE", "--name", "a", "--k", "3", "--runner", "nope"], "runner='nope'"),
    (["selections", "--store", "STORE", "--export", "nope"], "--export needs --out"),
    (["selections", "--store", "STORE", "--export", "nope", "--out", "x.npy"], "no selection named 'nope'"),
])
def test_errors_are_one_line_and_exit_2(digits_store, args, match):
    res = subprocess.run([sys.executable, "-m", "flows.cli.main", *[digits_store if a == "STORE" else a for a in args]],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], res.stderr
    assert not os.path.exists(os.path.join(digits_store, "selections"))



def test_a_quota_past_a_class_on_the_default_dask_runner_is_one_line_before_any_server(digits_store):
    """The launcher plans in its own process first: no Prefect server, no cluster, nothing written (issue 21)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    res = subprocess.run([sys.executable, "-m", "flows.cli.main", "select", "--store", digits_store, "--name", "q",
                          "--regime", "per-class", "--quotas", "10000"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "quota 10000 of class 0 is larger than the class" in lines[0], res.stderr
    assert "server" not in (res.stdout + res.stderr).lower()
    assert not os.path.exists(os.path.join(digits_store, "selections"))

@pytest.mark.slow
def test_kill_9_of_the_flow_then_a_rerun_makes_every_manifest_once(digits_store, tmp_path, prefect_api,
                                                                  manifest_bytes):
    names = ["first", "second", "third", "fourth"]
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps([{"name": n, "objective": "vendi", "k": 40} for n in names]))
    cmd = [sys.executable, "-m", "flows.cli.main", "select", "--store", digits_store, "--specs", str(specs),
           "--runner", "threads"]
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    kill_9_when(cmd, lambda: bool(manifest_bytes(digits_store, True)), env=env, cwd=ROOT, poll=0.02)
    finished = manifest_bytes(digits_store, True)
    assert 1 <= len(finished) < len(names), sorted(finished)
    for content in finished.values():  # what the killed run wrote is whole
        assert json.loads(content)["picks"]["ids"]

    rerun = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = manifest_bytes(digits_store, True)
    assert sorted(after) == sorted(os.path.join(n, "v0001.json") for n in names)  # every manifest once
    litter = set(manifest_bytes(digits_store)) - set(after)  # at most a killed write's hidden temporary file
    assert all(os.path.basename(p).startswith(".v0001.json.") and p.endswith(".tmp") for p in litter), litter
    assert [m["name"] for m in mf.list_manifests(digits_store)] == sorted(names)
    assert {p: after[p] for p in finished} == finished  # the finished ones untouched
    assert rerun.stdout.count("exists (same job key, skipped)") == len(finished)
    flow_run = [line for line in rerun.stdout.splitlines() if line.startswith("Prefect: ")]
    assert len(flow_run) == 1 and flow_run[0].startswith(f"Prefect: {prefect_api.removesuffix('/api')}/runs/flow-run/")
