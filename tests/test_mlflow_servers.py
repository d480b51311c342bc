"""The whole loop against real MLflow servers of both lines: 2.22 (from its own cached virtualenv, no logged
models) and this environment's 3.x. Train, compare-runs, promote, a second promote, rollback, and a run trained
while the server was down, synced after it is back. The trainings run in their own processes, as users run
them; promote and sync in this one (`cli_in_process`: the servers are what is tested here, and those
commands import MLflow, seconds each)."""

from __future__ import annotations

import json

import pytest
from helpers import Server, cli_in_process, run_cli, smoke_args
from mlflow_venv import VersionServer, server_python

pytestmark = pytest.mark.slow

HTML = ("<!doctype", "<html")


def _warm(uri: str) -> None:
    """One read with MLflow's patient client: a freshly started server's first answer can take seconds under load,
    longer than the short check the commands make."""
    from mlflow import MlflowClient

    MlflowClient(uri).search_experiments(max_results=1)


@pytest.fixture(scope="module", params=["2.22.5", "3.x"])
def line_server(request, tmp_path_factory):
    """One server of each line for the module's tests (each test in its own experiment and model)."""
    folder = tmp_path_factory.mktemp(f"server-{request.param}")
    if request.param == "3.x":
        srv = Server(folder)
    else:
        srv = VersionServer(folder, server_python(request.param))
    srv.line = request.param
    yield srv
    srv.kill()


@pytest.fixture
def server(line_server):
    """The line's server, up (started on first use, again after a test that stopped it)."""
    if line_server.proc is None:
        line_server.start()
        _warm(line_server.uri)
    return line_server


def _train(tmp_path, data, uri, name, env=None, experiment="servers"):
    r = run_cli(*smoke_args(tmp_path, data, "--set", f"name={name}", "--tracking-uri", uri,
                            "--experiment", experiment), cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert not any(h in out.lower() for h in HTML), out[-3000:]
    return out


def _run_id(out: str) -> str:
    line = next(x for x in out.splitlines() if x.startswith("run ") and " in experiment " in x)
    return line.split()[1]


def test_train_compare_promote_rollback(server, tmp_path, synthetic_data):
    from mlflow import MlflowClient

    out_a = _train(tmp_path, synthetic_data, server.uri, "a")
    out_b = _train(tmp_path, synthetic_data, server.uri, "b")
    notes = [x for x in (out_a + out_b).splitlines() if "has no logged models" in x]
    if server.line.startswith("2."):  # said once per process, in one line naming the server's version
        assert len(notes) == 2 and all(f"MLflow {server.line}" in x for x in notes), notes
    else:
        assert notes == []
    run_a, run_b = _run_id(out_a), _run_id(out_b)
    client = MlflowClient(server.uri)
    for run_id in (run_a, run_b):
        from mlflow.artifacts import list_artifacts

        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        files = {f.path for f in list_artifacts(artifact_uri=run.info.artifact_uri + "/model",
                                                tracking_uri=server.uri)}
        if server.line.startswith("2."):
            assert "model/MLmodel" in files, files
        else:
            assert [o.model_id for o in run.outputs.model_outputs], run.outputs

    r = run_cli("compare-runs", run_a, run_b, "--format", "json", "--tracking-uri", server.uri, cwd=tmp_path)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    verdict = json.loads(r.stdout)
    assert {x["run_id"] for x in verdict["runs"]} == {run_a, run_b}

    r = cli_in_process("promote", run_a, "--model", "det", "--force", "--tracking-uri", server.uri, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = cli_in_process("promote", run_b, "--model", "det", "--force", "--tracking-uri", server.uri, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert not any(h in (r.stdout + r.stderr).lower() for h in HTML)
    mv = client.get_model_version_by_alias("det", "champion")
    assert (mv.version, mv.run_id, mv.tags.get("sai.previous_version")) == ("2", run_b, "1"), mv.tags
    if server.line.startswith("2."):
        assert mv.source.endswith(f"{run_b}/artifacts/model"), mv.source

    r = cli_in_process("promote", "--rollback", "--model", "det", "--tracking-uri", server.uri, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert client.get_model_version_by_alias("det", "champion").version == "1"


def test_sync_after_an_outage(server, tmp_path, synthetic_data):
    """Trained while the server was down: spooled offline; after it is back, `sync` creates the run and its model."""
    from mlflow import MlflowClient

    uri = server.uri
    server.kill()
    spool = tmp_path / "spool"
    out = _train(tmp_path, synthetic_data, uri, "offline", env={"SAI_MLFLOW_SPOOL_DIR": str(spool)},
                 experiment="outage")
    assert "spooled locally" in out, out[-2000:]
    server.start()
    _warm(uri)
    r = cli_in_process("sync", "--spool-dir", str(spool), "--tracking-uri", uri, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("outage").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    r = cli_in_process("promote", runs[0].info.run_id, "--model", "det-outage", "--force", "--tracking-uri", uri,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert client.get_model_version_by_alias("det-outage", "champion").run_id == runs[0].info.run_id


def test_capabilities_are_asked_once_per_process(server):
    """The server's version decides (2.x: no logged models); the answer is kept: asked again with the server gone,
    the same answer comes back without a request."""
    from mlflow import MlflowClient

    from sai_mlflow.backend.mlflow_server import capabilities

    client = MlflowClient(server.uri)
    caps = capabilities(client)
    if server.line.startswith("2."):
        assert (caps.version, caps.logged_models) == (server.line, False)
    else:
        assert caps.logged_models and caps.version.startswith("3.")
    server.kill()
    assert capabilities(MlflowClient(server.uri)) == caps
