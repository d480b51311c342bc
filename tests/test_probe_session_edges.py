"""A probe session's edges without training: what the probe prints reaches its log redacted, and a session that
cannot set itself up does not leave its run RUNNING (real sqlite store, a real child process for the pipe)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sai_mlflow import keys as K
from sai_mlflow.probe.session import ProbeSpec, Session, copy_redacted

SECRET = "hunter2-probe"


def test_the_probe_output_is_copied_to_its_log_through_the_redaction_rule(tmp_path):
    lines = [f"train: Scanning /data/password={SECRET}/labels... 16 images\n",
             f"MLflow: logging to https://bob:{SECRET}@mlflow.example/\n", "Epoch 1/1 100%\rdone\n"]
    child = subprocess.Popen([sys.executable, "-c", f"import sys; sys.stdout.write({''.join(lines)!r})"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    copy_redacted(child.stdout, tmp_path / "probe.log")
    child.wait()
    log = (tmp_path / "probe.log").read_text()
    assert SECRET not in log
    assert "Scanning /data/" in log and "mlflow.example" in log and "done" in log


def test_a_session_that_cannot_make_its_workdir_closes_its_run(tmp_path, client, sqlite_uri, monkeypatch):
    monkeypatch.setenv("SAI_MLFLOW_SPOOL_DIR", str(tmp_path / "spool"))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the probes' project folder would go")
    spec = ProbeSpec(config_path="c.yaml", sets=[], args={"model": "yolov8n.yaml", "project": str(blocker)},
                     audit=None, tracking_uri=sqlite_uri, experiment="probe-edges", stage="", policy=None)
    with pytest.raises(OSError):
        Session(spec, client, say=print)
    exp = client.get_experiment_by_name("probe-edges")
    runs = client.search_runs([exp.experiment_id],
                              filter_string=f"tags.{K.TAG_RUN_KIND} = '{K.RUN_KIND_PROBE_SESSION}'")
    assert [r.info.status for r in runs] == ["FAILED"]
