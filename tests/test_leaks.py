"""Nothing leaked (issue 9, items 9-11): secrets never reach a param, tag, artifact, spool file, log or printed line.

Real parts: MLflow's basic-auth server (`mlflow server --app-name basic-auth`) on loopback, a real CPU
training whose tracking URI carries the password (`http://admin:PW@host:port`, which MLflow's own client
accepts), real importer inputs, a real sqlite store. Every place a secret could end up is grepped.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, Server, cli_in_process, free_port, run_cli

PW = "S3cr3t-Pw-9b-xyzzy"
TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # a GitHub token shape


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("auth-server"), app_name="basic-auth", admin_password=PW)
    s.start()
    yield s
    s.kill()


def admin_client(server: Server):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=server.login_uri())


def files_under(*roots: Path):
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in root.rglob("*") if p.is_file())


def assert_nowhere(secret: str, texts: dict[str, str], files=()) -> None:
    """`secret` in none of the texts nor the files (bytes, any encoding of the file)."""
    for where, text in texts.items():
        assert secret not in text, f"{secret!r} leaked in {where}: …{text[max(0, text.find(secret) - 200):][:400]}"
    for f in files:
        assert secret.encode() not in f.read_bytes(), f"{secret!r} leaked in {f}"


def run_everything(client, run) -> tuple[dict[str, str], list[Path]]:
    """Every param, tag and artifact of a run (artifacts downloaded), for grepping."""
    import mlflow.artifacts

    texts = {f"param {k}": v for k, v in run.data.params.items()}
    texts.update({f"tag {k}": v for k, v in run.data.tags.items()})
    local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, tracking_uri=client.tracking_uri))
    return texts, list(files_under(local))


# --- item 10: credentials in an HTTP tracking URI ----------------------------------------------------

@pytest.mark.slow
def test_training_with_credentials_in_the_uri_is_tracked_and_leaks_nothing(auth_server, synthetic_data, tmp_path):
    from helpers import smoke_args

    uri = auth_server.login_uri()
    env = {"SAI_MLFLOW_SPOOL_KEEP": "1", "YOLO_CONFIG_DIR": str(tmp_path / "yolo-cfg")}
    p = run_cli(*smoke_args(tmp_path, synthetic_data, "--set", "epochs=1", "--set", "plots=False"),
                "--tracking-uri", uri, "--experiment", "leaks", cwd=tmp_path, env=env)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert "unreachable" not in out and "spooled locally" not in out, out[-2000:]  # the probe takes user:pw@ URIs
    client = admin_client(auth_server)
    (run,) = client.search_runs([client.get_experiment_by_name("leaks").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics, run.info
    texts, files = run_everything(client, run)
    assert any(f.name == "args.yaml" for f in files)
    texts["output"] = out
    spool = tmp_path / "mlruns" / "spool"
    assert spool.is_dir() and any(files_under(spool)), "SAI_MLFLOW_SPOOL_KEEP keeps the spool to be grepped"
    for meta in spool.rglob("meta.json"):
        assert stat.S_IMODE(meta.stat().st_mode) == 0o600, oct(meta.stat().st_mode)
    assert_nowhere(PW, texts, [*files, *files_under(spool, tmp_path / "runs")])


def test_offline_spool_meta_holds_no_credentials(tmp_path):
    """A store down at the start: meta.json keeps the URI without `user:pw@`, 0600; sync says where they come from."""
    from sai_mlflow.tracking.spool import SpoolingSink, list_spools, sync_spool

    dead = f"http://admin:{PW}@127.0.0.1:{free_port()}"
    sink = SpoolingSink(None, "local-leaktest", root=tmp_path / "spool",
                        meta={"tracking_uri": dead, "experiment": "x", "run_name": "r",
                              "tags": {"note": f"password={PW}"}}, report=lambda m: None)
    sink.spool.close()
    (sp,) = list_spools(tmp_path / "spool")
    meta_file = sp.dir / "meta.json"
    assert stat.S_IMODE(meta_file.stat().st_mode) == 0o600
    assert PW not in meta_file.read_text()
    assert sp.meta()["tracking_uri"] == dead.replace(f"admin:{PW}@", "admin@")  # the password goes, the user stays
    res = sync_spool(sp)
    assert res.state == "failed" and PW not in res.message
    assert "MLFLOW_TRACKING_USERNAME" in res.message and "--tracking-uri" in res.message


@pytest.mark.slow
@pytest.mark.parametrize("command", ["compare-runs", "promote", "import-history"])
def test_wrong_or_missing_credentials_one_line_no_echo(auth_server, tmp_path, command):
    """401 from a basic-auth server: one `Error:` line, exit 2, the password given never echoed."""
    wrong = "Wr0ng-" + PW
    hist = ROOT / "configs" / "history" / "seed_2024-08.yaml"
    for uri in (auth_server.login_uri(password=wrong), auth_server.login_uri(user=None)):
        args = {"compare-runs": ["compare-runs", "--experiment", "nothing-here"],
                "promote": ["promote", "0" * 32, "--model", "det", "--dry-run"],
                "import-history": ["import-history", str(hist)]}[command]
        p = cli_in_process(*args, "--tracking-uri", uri, cwd=tmp_path)
        out = p.stdout + p.stderr
        assert p.returncode == 2, out[-2000:]
        assert "Traceback" not in out and wrong not in out and PW not in out, out[-2000:]
        errors = [line for line in out.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, out[-2000:]
        assert "credentials" in errors[0] or "401" in errors[0] or "refused" in errors[0], errors[0]

@pytest.mark.slow
def test_import_to_a_uri_with_credentials_prints_no_password(auth_server, tmp_path):
    """MLflow's client prints "View run … at: <URI>" on set_terminated, user:password included."""
    p = run_cli("import-history", str(ROOT / "configs" / "history" / "seed_2024-08.yaml"), "--experiment", "imp-http",
                "--tracking-uri", auth_server.login_uri(), cwd=tmp_path, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-2000:]
    assert p.stdout.count("imported") == 3
    assert_nowhere(PW, {"output": p.stdout + p.stderr})


# --- item 9: secrets in imports -------------------------------------------------------------------------

def test_import_history_redacts_params_and_tags(client, tmp_path):
    f = tmp_path / "h.yaml"
    f.write_text(yaml.safe_dump({"format": "sai-history/1", "experiment": "imp", "runs": [{
        "name": "a", "start": "2024-08-24T06:00:00Z", "batch": 8, "batches_per_epoch": 4, "epochs_completed": 1,
        "speed": {"step_s": 0.5},
        "params": {"db": f"postgres://u:{PW}@db.example/x", "hf_token": PW, "api-key": PW, "passwd": PW,
                   "private_key": PW, "auth": PW, "credential": PW, "note": f"uses {TOKEN}"},
        "tags": {"secret": PW, "conn": f"mysql://root:{PW}@h/d", "remark": f"password={PW}"}}]}))
    p = cli_in_process("import-history", str(f), "--tracking-uri", client.tracking_uri, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    (run,) = client.search_runs([client.get_experiment_by_name("imp").experiment_id])
    texts = {f"param {k}": v for k, v in run.data.params.items()}
    texts.update({f"tag {k}": v for k, v in run.data.tags.items()})
    texts["output"] = p.stdout + p.stderr
    assert_nowhere(PW, texts)
    assert_nowhere(TOKEN, texts)
    assert run.data.params["hf_token"] == "***redacted***"
    assert run.data.params["db"] == "postgres://u:***redacted***@db.example/x"


def test_import_ultralytics_redacts_params_and_uploads_a_redacted_args_yaml(client, tmp_path):
    from test_import_ultralytics import make_run_dir

    d = make_run_dir(tmp_path, "data.yaml")
    args = yaml.safe_load((d / "args.yaml").read_text())
    args.update({"passwd": PW, "credential": PW, "auth": PW, "private_key": PW, "api-key": PW,
                 "data": f"https://user:{PW}@example.com/data.zip", "project": f"runs/{TOKEN}"})
    (d / "args.yaml").write_text(yaml.safe_dump(args, sort_keys=False))
    p = cli_in_process("import-ultralytics", str(d), "--experiment", "imp-u", "--tracking-uri",
                       client.tracking_uri, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    (run,) = client.search_runs([client.get_experiment_by_name("imp-u").experiment_id])
    texts, files = run_everything(client, run)
    texts["output"] = p.stdout + p.stderr
    uploaded = next(f for f in files if f.name == "args.yaml")
    assert yaml.safe_load(uploaded.read_text())["epochs"] == 10  # still the run's arguments, readable
    assert_nowhere(PW, texts, files)
    assert_nowhere(TOKEN, texts, files)
    assert PW in (d / "args.yaml").read_text()  # the user's own file is left as it is


# --- item 11: the venv starts MLflow's basic-auth app ------------------------------------------------------

@pytest.mark.slow  # a new interpreter importing MLflow's server: seconds; the basic-auth server tests need it too
def test_the_venv_has_what_the_basic_auth_app_needs():
    p = subprocess.run([sys.executable, "-c", "import flask_wtf, mlflow.server.auth"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
