"""Links: printed ones start with the UI's address, stored ones are relative; and what MLflow stores stays true.

- the printed base: `--ui-url`, else an http(s) tracking server (no credentials), else SAI_MLFLOW_UI_URL, else
  http://127.0.0.1:5000;
- links stored inside MLflow (run descriptions, the decision run and its artifacts, model-version
  descriptions) are `#/…` routes: no host in them;
- `--log-report` twice over the same runs leaves one decision run (updated);
- after a promotion or a rollback, only the version holding the alias says so (`sai.alias`, description).

Real sqlite stores and the real commands; the seed's history gives judged runs without training, and the
promoted runs carry a real (tiny) MLflow logged model, registered as any other.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import copy_store

from sai_mlflow import keys as K
from sai_mlflow import promotion
from sai_mlflow.cli import cli
from sai_mlflow.ui_links import RELATIVE, compare_url, experiments_url, model_version_url, run_url, server_base, ui_base

SEED_EXP = "sai-net-stage1"  # the seed's experiment
HOST = re.compile(r"https?://|127\.0\.0\.1|localhost|example")


def test_printed_base_order(monkeypatch):
    monkeypatch.delenv(K.ENV_UI_URL, raising=False)
    server = "https://alice:s3cret@mlflow.team:8443/mlflow/?x=1"
    assert server_base(server) == "https://mlflow.team:8443/mlflow"
    assert server_base("sqlite:///m.db") is None and server_base(None) is None
    assert ui_base(None, "sqlite:///m.db") == "http://127.0.0.1:5000"
    assert ui_base(None, server) == "https://mlflow.team:8443/mlflow"
    monkeypatch.setenv(K.ENV_UI_URL, "http://127.0.0.1:5001/")
    assert ui_base(None, server) == "https://mlflow.team:8443/mlflow"  # a server serves its own UI
    assert ui_base(None, "sqlite:///m.db") == "http://127.0.0.1:5001"  # where a local store's UI is served
    assert ui_base("http://cli:1/", server) == "http://cli:1"  # said for this command: wins


def test_relative_links_are_bare_routes():
    for url in (run_url(RELATIVE, "1", "abc"), compare_url(RELATIVE, ["1"], ["abc"]),
                model_version_url(RELATIVE, "m", "2"), experiments_url(RELATIVE)):
        assert url.startswith("#/") and url.endswith("workflowType=machine_learning"), url
    assert run_url("http://h:1", "1", "abc") == "http://h:1/#/experiments/1/runs/abc?workflowType=machine_learning"


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def compare(uri, *args, env=None):
    from sai_mlflow.cli.compare import compare_runs

    return CliRunner().invoke(compare_runs, [*args, "--tracking-uri", uri], env=env, catch_exceptions=False)


@pytest.fixture
def seeded(seed_store, tmp_path):
    """A copy of the session's store of the seed's history (tests/conftest.py `seed_store`)."""
    from sai_mlflow.tracking.store import make_client

    uri = copy_store(seed_store[0], tmp_path / "seed")
    client = make_client(uri)
    return uri, client, client.get_experiment_by_name(SEED_EXP).experiment_id


def _decision_runs(client, exp_id):
    return client.search_runs([exp_id], filter_string=f"tags.{K.TAG_RUN_KIND} = '{K.RUN_KIND_DECISION}'")


def test_stored_links_are_relative_and_log_report_updates_its_run(seeded, tmp_path):
    uri, client, exp_id = seeded
    first = compare(uri, "--experiment", SEED_EXP, "--tag-runs", "--log-report", "--ui-url", "http://mlflow.example:8080")
    assert first.exit_code == 0, first.output
    (dec,) = _decision_runs(client, exp_id)
    printed = f"http://mlflow.example:8080/#/experiments/{exp_id}/runs/{dec.info.run_id}?workflowType=machine_learning"
    assert printed in first.output  # printed links: absolute, at the UI's address

    again = compare(uri, "--experiment", SEED_EXP, "--tag-runs", "--log-report", "--format", "json")
    assert again.exit_code == 0, again.output
    (same,) = _decision_runs(client, exp_id)  # updated, not twinned
    assert same.info.run_id == dec.info.run_id and same.info.status == "FINISHED"
    decision_link = json.loads(again.stdout)["links"]["decision_run"]
    assert decision_link.startswith(f"http://127.0.0.1:5000/#/experiments/{exp_id}/")

    stored = [same.data.tags[K.TAG_DESCRIPTION]]
    stored += [client.get_run(r).data.tags[K.TAG_DESCRIPTION] for r in same.data.tags[K.TAG_JUDGED_RUNS].split(",")]
    local = Path(client.download_artifacts(same.info.run_id, "", str(tmp_path / "art")))
    stored += [(local / K.ARTIFACT_DECISION_MD).read_text(), (local / K.ARTIFACT_DECISION_JSON).read_text()]
    for text in stored:
        assert "#/experiments/" in text and not HOST.search(text), text[:500]
    report = f"#/experiments/{exp_id}/runs/{dec.info.run_id}?workflowType=machine_learning"
    assert f"[Decision report]({report})" in stored[1]


def _with_model(client, run_id: str, tmp_path: Path) -> None:
    """A real MLflow logged model on the run (a tiny folder of files): what `promote` registers."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    exp_id = client.get_run(run_id).info.experiment_id
    folder = tmp_path / f"model-{run_id}"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    lm = client.create_logged_model(exp_id, name="model", source_run_id=run_id)
    client.log_model_artifacts(lm.model_id, str(folder))
    client.finalize_logged_model(lm.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(lm.model_id, 0)])


def test_only_the_holder_says_it_holds_the_alias(seeded, tmp_path):
    uri, client, exp_id = seeded
    runs = [r.info.run_id for r in client.search_runs([exp_id], order_by=["attributes.start_time ASC"])]
    for rid in runs[:2]:
        _with_model(client, rid, tmp_path)
    for rid in runs[:2]:
        res = invoke("promote", rid, "--model", "det-links", "--force", "--tracking-uri", uri)
        assert res.exit_code == 0, res.output
        time.sleep(0.01)

    def states():
        out = {}
        for mv in client.search_model_versions("name = 'det-links'"):
            out[str(mv.version)] = (mv.tags.get(promotion.TAG_ALIAS), mv.description)
        return out

    def holder():
        return str(client.get_registered_model("det-links").aliases["champion"])

    def check():
        h = holder()
        for version, (tag, desc) in states().items():
            assert not HOST.search(desc) and "#/experiments/" in desc  # the promoted run, linked relatively
            if version == h:
                assert tag == "champion" and "no longer @champion" not in desc.split("\n\n")[0]
            else:
                assert tag is None and desc.startswith("**Alias:** no longer @champion"), (version, desc[:200])
        return h

    assert check() == "2"
    back = invoke("promote", "--rollback", "--model", "det-links", "--tracking-uri", uri)
    assert back.exit_code == 0, back.output
    assert check() == "1"
    assert states()["1"][1].startswith("**Alias:** @champion again since") and states()["1"][1].count("**Alias:**") == 1
