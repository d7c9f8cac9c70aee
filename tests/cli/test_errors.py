"""The one error path: bad input exits 2, a failure once the run started exits 1, each as one line.

The commands are run in-process with their launcher replaced, so these tests need no Prefect server or cluster:
what is checked is how the CLI sorts an exception, not the flow that raises it.
"""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

import flows.curate
from flows.cli.errors import BadInput, refusing
from flows.cli.main import app
from flows.cli.options import launch, store_ref
from storage.curated import CurationConflict, CurationLocked
from tests.helpers import Outcome, assert_one_line


def _curate(monkeypatch, tmp_path, exc, *extra):
    def boom(options, **target):
        raise exc

    monkeypatch.setattr(flows.curate, "run_curate", boom)
    monkeypatch.setattr("flows.cli.curate.launch", lambda *a, **k: {})
    return Outcome(CliRunner().invoke(app, ["curate", "digits", "--store", str(tmp_path / "s.zarr"), *extra]))


@pytest.mark.parametrize("exc,code", [
    (CurationLocked("pool.zarr.curated is locked by another curate run"), 1),
    (CurationConflict("LATEST is v0002 but this run started from v0001"), 1),
    (RuntimeError("step train failed"), 1),
    (OSError(28, "No space left on device"), 1),
    (ValueError("objective 'vendy' is unknown"), 2),
])
def test_curate_sorts_failures_into_bad_input_and_run_time(monkeypatch, tmp_path, exc, code):
    out = _curate(monkeypatch, tmp_path, exc)
    assert_one_line(out, code, str(exc.args[-1]))


def test_curate_runs_inline_and_its_plan_refuses_bad_input_first(tmp_path):
    """Issue 18: every flow runs inline, ``worth curate`` included (it used to refuse --runner inline); the
    night's plan still refuses bad input in one line, exit 2, before anything is written."""
    out = Outcome(CliRunner().invoke(app, ["curate", "digits", "--store", str(tmp_path / "s.zarr"), "--runner",
                                           "inline", "--objective", "no-such-objective"]))
    assert_one_line(out, 2, "no-such-objective")
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("runner,fragment", [("spark", "choose one of dask, threads, inline")])
def test_launch_names_an_unknown_runner(runner, fragment):
    with pytest.raises(BadInput, match=fragment):
        launch(runner)


@pytest.mark.parametrize("store,options,fragment", [
    ("/tmp/x.zarr", ["anon=true"], "only apply to fsspec URLs"),
    ("s3://b/x.zarr", ["anon"], "is not KEY=VALUE"),
])
def test_store_ref_refuses_a_bad_pair(store, options, fragment):
    with pytest.raises(typer.BadParameter, match=fragment):
        store_ref(store, options)


def test_store_ref_joins_store_and_options():
    ref = store_ref("s3://b/x.zarr", ["endpoint_url=http://127.0.0.1:9", "anon=true"])
    assert ref.url == "s3://b/x.zarr" and ref.storage_options == {"endpoint_url": "http://127.0.0.1:9", "anon": True}


def test_refusing_turns_only_the_named_types_into_bad_input():
    with pytest.raises(BadInput, match="^k=0 must be positive$"):
        with refusing():
            raise ValueError("k=0 must be positive\nmore detail")
    with pytest.raises(RuntimeError):
        with refusing(ValueError):
            raise RuntimeError("at run time")


def _params(command):
    return {p.opts[0]: p for p in typer.main.get_command(app).commands[command].params if p.opts}


@pytest.mark.parametrize("command", ["embed", "select", "study", "curate"])
def test_the_shared_options_read_alike_in_every_command(command):
    params = _params(command)
    for option in ("--runner", "--workers", "--scheduler", "--store"):
        assert option in params, (command, option)
    assert params["--scheduler"].help == _params("embed")["--scheduler"].help
    assert params["--workers"].help.startswith("Dask worker processes (default: one per core); threads: ")
    assert params["--runner"].help.startswith("dask (a LocalCluster, or --scheduler)")
    assert "threads (Prefect, " in params["--runner"].help
    assert "inline (no Prefect" in params["--runner"].help  # every command, curate included (issue 18)


@pytest.mark.parametrize("command", ["embed", "info", "select", "selections", "study"])
def test_storage_option_is_one_definition(command):
    assert _params(command)["--storage-option"].help == _params("embed")["--storage-option"].help
