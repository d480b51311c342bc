"""Issue 17 item 2: one redaction rule for everything that leaves the process.

Fast tests of the rule itself (`sai_mlflow/redact.py`), and one slow end-to-end test: a real CPU training into a
real sqlite store with a secret in the data path, the run name and --ui-url, then a real import of a history
file full of secrets; the secrets are then looked for in the sqlite file's bytes, every artifact but weights,
the spool and everything printed.
"""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, run_cli

from sai_mlflow import redact as R
from sai_mlflow.redact import MARKER, is_secret_key, redact_text

# --- the rule ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["db_pass", "DB_PASS", "pwd", "PWD", "db_pwd", "passwd", "dbPass", "user_passphrase",
                                 "password", "api_key", "apiKey", "auth_token", "client_secret"])
def test_short_and_camel_case_secret_keys_are_caught(key):
    assert is_secret_key(key), key


@pytest.mark.parametrize("key", ["bypass", "compass", "passes", "batch", "cls_pw", "epochs", "name", "data"])
def test_ordinary_keys_are_not_secret(key):
    assert not is_secret_key(key), key


def test_no_ultralytics_argument_is_taken_for_a_secret():
    """Every trainer argument is a param: the key rule must not blank one of them."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    assert [k for k in DEFAULT_CFG_DICT if is_secret_key(k)] == []


@pytest.mark.parametrize("text, secret", [
    ('conn password="hunter 2" host=db', "hunter 2"),
    ("db_pass='s3cr3t' user=bob", "s3cr3t"),
    ("pwd=s3cr3t", "s3cr3t"),
    ('{"token": "abc123xyz"}', "abc123xyz"),
    ("dsn: host=db db_pwd=Zq9 port=5432", "Zq9"),
])
def test_inline_secrets_with_quotes_and_short_keys_are_hidden(text, secret):
    out = redact_text(text)
    assert secret not in out and MARKER in out, out


def test_quoted_values_keep_their_quotes_and_redaction_is_idempotent():
    out = redact_text('password="hunter 2"')
    assert out == f'password="{MARKER}"'
    assert redact_text(out) == out


def test_plain_text_is_left_alone():
    for text in ("bypass=3 compass: north", "Unauthorized: check the login", "epochs=3 batch=8"):
        assert redact_text(text) == text


HISTORY = """\
# seed history; the DB login was password=hunter2 (rotated)
format: sai-history/1   # token: abc123
runs:
  - name: b128
    db_pass: s3cr3t
    pwd: |
      two
      lines
    tokens: [a1, b2]
    note: "conn password=\\"qq q\\" here"
    url: http://u:pw9@h/x
    nested: {auth: {user: bob}, key: ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8}
    batch: 96
"""


def test_a_yaml_copy_keeps_every_line_and_hides_every_secret():
    out = R.redact_yaml_text(HISTORY)
    for secret in ("hunter2", "abc123", "s3cr3t", "two", "a1", "b2", "qq q", "pw9", "ghp_A1b2"):
        assert secret not in out, (secret, out)
    assert len(out.splitlines()) == len(HISTORY.splitlines())  # a description cites lines of the copy
    for a, b in zip(HISTORY.splitlines(), out.splitlines()):
        if "name:" in a or "batch:" in a or "format:" in a:
            assert a.split("#")[0] == b.split("#")[0]
    doc = yaml.safe_load(out)  # still YAML, with the figures intact
    run = doc["runs"][0]
    assert run["batch"] == 96 and run["name"] == "b128" and run["db_pass"] == MARKER
    assert run["nested"]["auth"] == {"user": "bob"} and run["tokens"] == [MARKER, MARKER]


def test_text_that_is_not_yaml_is_redacted_as_text():
    assert R.redact_yaml_text("a: [1\npassword=abc\n") == f"a: [1\npassword={MARKER}\n"


def test_a_redacting_stream_hides_what_is_written_through_it():
    raw = io.StringIO()
    stream = R.RedactingStream(raw)
    print("data in /d/ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8/data.yaml", file=stream)
    stream.writelines(["http://bob:pw@h:5000/\n"])
    assert "ghp_A1b2" not in raw.getvalue() and ":pw@" not in raw.getvalue()
    assert MARKER in raw.getvalue() and stream.getvalue() == raw.getvalue()  # the rest passes through


def test_ui_base_never_prints_credentials(monkeypatch):
    from sai_mlflow.ui_links import run_url, ui_base

    monkeypatch.delenv("SAI_MLFLOW_UI_URL", raising=False)
    url = run_url(ui_base("http://bob:UiPw5ecret@ui.example:5000/"), "1", "abc")
    assert "UiPw5ecret" not in url and url.startswith("http://bob@ui.example:5000/#/")
    monkeypatch.setenv("SAI_MLFLOW_UI_URL", "https://ui.example/?token=Tok3nValue")
    assert "Tok3nValue" not in ui_base(None)


# --- end to end -----------------------------------------------------------------------------------------

DATA_SECRET = "ghp_" + "D4t4P4thS3cr3tA1b2C3d4E5f6G7h8I9j0K1"  # a GitHub token shape in a folder name
RUN_SECRET = "ghp_" + "RunN4meS3cr3tZ9y8X7w6V5u4T3s2R1q0P9o8"
UI_SECRET = "UiPw5ecretZZ"
HISTORY_SECRETS = {"db_pass": "DbPa55Secret", "pwd": "PwdSecret77", "remark": "QuotedSecret99",
                   "comment": "CommentSecret55", "conn": "UrlSecret31", "name": "hf_" + "R3playNameS3cretAAAAAAAAAA"}
EXPERIMENT_SECRET = "ExpS3cretQQ"


def _history(path: Path) -> Path:
    s = HISTORY_SECRETS
    path.write_text(f"""\
format: sai-history/1   # exported by bob, password={s['comment']}
runs:
  - name: "b96 {s['name']}"
    start: 2024-08-01T10:00:00Z
    batch: 96
    train_images: 960
    epochs_planned: 3
    epochs_completed: 1
    speed: {{step_s: 1.2}}
    memory: {{total_gib: 140, ramp: [[0, 20], [60, 105]]}}
    epochs: {{val/mAP50: [0.4]}}
    params: {{db_pass: {s['db_pass']}, pwd: {s['pwd']}, lr0: 0.01}}
    tags: {{remark: 'login with password="{s['remark']}"', conn: "mysql://root:{s['conn']}@db/x"}}
""")
    return path


def _files(*roots: Path):
    for root in roots:
        if root.is_dir():
            yield from (p for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
def test_no_secret_from_a_data_path_run_name_ui_url_or_history_file_appears_anywhere(tmp_path):
    from sai_mlflow.data.synthetic import SyntheticSpec, generate

    data = generate(tmp_path / DATA_SECRET, SyntheticSpec(train=16, val=4, width=96, height=64))
    store = tmp_path / "my store"  # a space: the printed `mlflow ui` command must quote it (item 5)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    env = {"SAI_MLFLOW_SPOOL_KEEP": "1", "YOLO_CONFIG_DIR": str(tmp_path / "yolo-cfg"),
           "SAI_MLFLOW_SPOOL_DIR": str(tmp_path / "spool")}
    experiment = f"exp password={EXPERIMENT_SECRET}"
    train = run_cli("train", "--config", str(ROOT / "configs" / "cpu_smoke.yaml"), "--set", f"data={data}",
                    "--set", "epochs=1", "--set", "batch=8", "--set", "imgsz=64",
                    "--set", f"project={tmp_path / 'runs'}",
                    "--set", "tracking.publish_interval_s=1", "--tracking-uri", uri, "--experiment", experiment,
                    "--run-name", f"nightly {RUN_SECRET}", "--ui-url", f"http://bob:{UI_SECRET}@ui.example:5000",
                    cwd=tmp_path, env=env)
    printed = train.stdout + train.stderr
    assert train.returncode == 0, printed[-3000:]
    imp = run_cli("import-history", str(_history(tmp_path / "history.yaml")), "--tracking-uri", uri,
                  "--experiment", experiment, "--ui-url", f"http://bob:{UI_SECRET}@ui.example:5000", cwd=tmp_path,
                  env=env)
    printed += imp.stdout + imp.stderr
    assert imp.returncode == 0, printed[-3000:]

    store_files = [store / "mlflow.db", *(p for p in _files(store / "artifacts", tmp_path / "spool")
                                          if p.suffix != ".pt")]
    assert list(_files(tmp_path / "spool")), "the spool was kept (SAI_MLFLOW_SPOOL_KEEP) and is checked"
    leaks = []
    for secret in [DATA_SECRET, RUN_SECRET, UI_SECRET, EXPERIMENT_SECRET, *HISTORY_SECRETS.values()]:
        if secret in printed:
            leaks.append(f"{secret} printed: …{printed[max(0, printed.find(secret) - 120):][:240]}")
        if secret != EXPERIMENT_SECRET:  # the experiment's own name is stored as given; printed lines redact it
            leaks += [f"{secret} in {f.relative_to(tmp_path)}" for f in store_files
                      if secret.encode() in f.read_bytes()]
    assert not leaks, "\n".join(leaks)
    assert "http://bob@ui.example:5000/#/experiments/" in printed  # the links still point at the UI, no password
    serve = next(line for line in train.stderr.splitlines() if "sai-mlflow ui --tracking-uri" in line)
    assert shlex.split(serve.split("mode): ", 1)[1])[-1] == uri, serve  # pastes as one argument

    from sai_mlflow.tracking.store import make_client

    client = make_client(uri)
    exp = client.get_experiment_by_name(experiment)  # the name itself stays the user's identifier
    runs = {r.data.tags.get("run_kind"): r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) >= {"train", "replay"}, runs.keys()
    train_run, replay = runs["train"], runs["replay"]
    assert train_run.info.run_name == f"nightly {MARKER}" and replay.info.run_name.startswith("b96 ")
    assert replay.data.params["lr0"] == "0.01" and replay.data.params["db_pass"] == MARKER
    inputs = train_run.inputs.dataset_inputs
    assert inputs and MARKER in inputs[0].dataset.source, inputs  # still recorded, redacted
    assert any(p.name == "summary.md" for p in _files(store / "artifacts"))
    assert any(p.parent.name == "history" and p.suffix == ".yaml" for p in _files(store / "artifacts"))


def test_a_process_no_command_wraps_redacts_its_prints_and_ultralytics_lines():
    """A DDP worker (TrackedDetectionTrainer in a rank >= 0) calls this: Ultralytics' handler was bound to the
    real stdout at import, before sai_mlflow could wrap it."""
    code = ("import sys; from ultralytics.utils import LOGGER; from sai_mlflow.redact import redact_process_output\n"
            "redact_process_output()\n"
            f"LOGGER.info('train: Scanning /data/password={DATA_SECRET}/labels'); print('https://bob:{UI_SECRET}@h/')\n"
            f"print('token={RUN_SECRET}', file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "YOLO_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    printed = r.stdout + r.stderr
    assert "Scanning /data/" in printed and "@h/" in printed
    assert not [s for s in (DATA_SECRET, UI_SECRET, RUN_SECRET) if s in printed], printed
