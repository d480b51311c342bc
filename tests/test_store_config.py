"""Store classification without a database: redaction, scheme and driver refusals, 401/403 wording."""

from __future__ import annotations

import pytest

from sai_mlflow.errors import StoreConfigError
from sai_mlflow.redact import redact_text
from sai_mlflow.tracking.store import artifact_warning, check_store, config_error, with_credentials


def test_redaction_drops_uri_passwords_and_mlflow_password(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2-xyz")
    text = ("see postgresql+psycopg://alice:s3cr%40t@db:5432/mlflow and http://bob:pw@h:5000/ "
            "sent hunter2-xyz; sqlite:////tmp/a.db stays")
    out = redact_text(text)
    assert "s3cr" not in out and ":pw@" not in out and "hunter2-xyz" not in out
    assert ("postgresql+psycopg://alice:***redacted***@db:5432/mlflow" in out
            and "http://bob:***redacted***@h:5000/" in out)
    assert "sqlite:////tmp/a.db" in out


def test_a_redacted_uri_gets_its_password_back_only_from_the_same_uri(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://alice:pw@db/mlflow")
    assert with_credentials("postgresql://alice@db/mlflow") == "postgresql://alice:pw@db/mlflow"
    assert with_credentials("postgresql://alice@other/mlflow") == "postgresql://alice@other/mlflow"


@pytest.mark.parametrize("uri, needle", [
    ("postgres://u:pw@127.0.0.1:1/x", "unknown scheme 'postgres://'"),
    ("fooo://bar", "unknown scheme"),
    ("postgresql+psycopg2://u:pw@127.0.0.1:1/x", "psycopg2"),
    ("mysql+nosuchdriver://u:pw@127.0.0.1:1/x", "no driver"),
    ("postgresql://u:pw@127.0.0.1:notaport/x", "malformed"),
])
def test_misconfigured_uris_are_refused_with_the_fix_and_no_password(uri, needle):
    with pytest.raises(StoreConfigError) as e:
        check_store(uri)
    assert needle in str(e.value) and ":pw@" not in str(e.value)


def test_connection_refused_is_an_outage_not_a_misconfiguration():
    with pytest.raises(ConnectionError):
        check_store("postgresql://u:pw@127.0.0.1:1/x")
    with pytest.raises(ConnectionError):
        check_store("http://127.0.0.1:1")


def test_401_says_who_you_are_and_403_what_you_may_not_do(monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, RESOURCE_DOES_NOT_EXIST, UNAUTHENTICATED

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    e401 = config_error(MlflowException("x", error_code=UNAUTHENTICATED), "http://u:pw@h:5000")
    e403 = config_error(MlflowException("x", error_code=PERMISSION_DENIED), "http://h:5000", "moving @champion")
    assert "HTTP 401" in str(e401) and "MLFLOW_TRACKING_PASSWORD" in str(e401) and ":pw@" not in str(e401)
    assert "HTTP 403" in str(e403) and "moving @champion" in str(e403) and "user 'bob'" in str(e403)
    assert config_error(MlflowException("x", error_code=RESOURCE_DOES_NOT_EXIST), "http://h") is None
    assert config_error(ConnectionError("down"), "http://h") is None


def test_artifact_warning_only_for_a_database_keeping_artifacts_on_local_disk():
    assert "tracking.artifact_location" in artifact_warning("postgresql://u@db/m", "/home/me/mlruns/1")
    assert artifact_warning("postgresql://u@db/m", "file:///home/me/mlruns/1")
    assert artifact_warning("postgresql://u@db/m", "s3://bucket/x") is None
    assert artifact_warning("http://server:5000", "/home/me/mlruns/1") is None
    assert artifact_warning("sqlite:////tmp/mlflow.db", "/tmp/artifacts") is None
