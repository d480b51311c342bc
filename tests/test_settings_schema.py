"""One settings schema (issue 18 step 4): the config's validated `tracking:` section, carried to DDP workers and
probe children as one JSON environment variable; a bad value anywhere is refused with its name, never dropped."""

from __future__ import annotations

import json
import os

import pytest

from sai_mlflow.config import TrackingSection, load_config
from sai_mlflow.tracking.settings import (
    ENV_SETTINGS,
    LIBRARY_ENV,
    SettingsError,
    TrackingSettings,
    environment,
    hand_on,
    restored_settings,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in [ENV_SETTINGS, *LIBRARY_ENV.values()]:
        monkeypatch.delenv(var, raising=False)


def test_the_settings_are_the_config_section_plus_the_run():
    assert issubclass(TrackingSettings, TrackingSection)  # same fields, defaults and bounds: written once
    section = TrackingSection(memory_interval_s=0.25, log_model=False)
    s = TrackingSettings.from_config(section, stage="2", run_kind="probe")
    assert s.memory_interval_s == 0.25 and s.log_model is False and s.stage == "2"
    assert s.publish_interval_s == TrackingSection().publish_interval_s


def test_a_training_hands_on_one_variable_and_it_comes_back_equal(tmp_path):
    s = TrackingSettings(tracking_uri=f"sqlite:///{tmp_path}/m.db", experiment="e", run_id="abc", stage="1",
                         memory_interval_s=0.25, log_model=False, guard_stop_on="memory_over_limit")
    with environment(s):
        ours = sorted(k for k in os.environ if k.startswith("SAI_MLFLOW_"))
        assert ours == [ENV_SETTINGS]
        assert json.loads(os.environ[ENV_SETTINGS])["run_id"] == "abc"
        assert TrackingSettings.from_env() == s
    assert ENV_SETTINGS not in os.environ


def test_the_one_variable_wins_over_the_library_variables(monkeypatch):
    monkeypatch.setenv("SAI_MLFLOW_STAGE", "library")
    with environment(TrackingSettings(stage="config", tracking_uri="sqlite:////tmp/x.db")):
        assert TrackingSettings.from_env().stage == "config"
    assert TrackingSettings.from_env().stage == "library"


def test_a_bad_float_is_refused_with_its_variable_not_dropped(monkeypatch):
    monkeypatch.setenv("SAI_MLFLOW_PUBLISH_INTERVAL_S", "fast")
    with pytest.raises(SettingsError) as e:
        TrackingSettings.from_env()
    assert "SAI_MLFLOW_PUBLISH_INTERVAL_S='fast'" in str(e.value) and "tracking.publish_interval_s" in str(e.value)


@pytest.mark.parametrize("var, value", [("SAI_MLFLOW_LOG_MODEL", "maybe"), ("SAI_MLFLOW_MEMORY_INTERVAL_S", "0"),
                                        ("SAI_MLFLOW_FLUSH_TIMEOUT_S", "-1")])
def test_bad_library_values_are_refused(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=var):
        TrackingSettings.from_env()


def test_library_values_are_read_through_the_schema(monkeypatch):
    monkeypatch.setenv("SAI_MLFLOW_LOG_MODEL", "0")
    monkeypatch.setenv("SAI_MLFLOW_FLUSH_TIMEOUT_S", "30")
    s = TrackingSettings.from_env()
    assert s.log_model is False and s.final_flush_timeout_s == 30.0


@pytest.mark.parametrize("raw, says", [('{"publish_interval_s": "x"}', "publish_interval_s"),
                                       ('{"memory_intervall_s": 1}', "memory_intervall_s"),
                                       ("not json", "not JSON"), ("[1]", "JSON object")])
def test_a_bad_carried_value_is_refused_naming_the_variable(monkeypatch, raw, says):
    monkeypatch.setenv(ENV_SETTINGS, raw)
    with pytest.raises(SettingsError) as e:
        TrackingSettings.from_env()
    assert str(e.value).startswith(ENV_SETTINGS) and says in str(e.value)


def test_the_ddp_hand_on_does_not_outlive_the_training():
    with restored_settings():
        hand_on(TrackingSettings(run_id="r1"))
        assert ENV_SETTINGS in os.environ
    assert ENV_SETTINGS not in os.environ


def test_train_builds_its_settings_from_the_validated_section(synthetic_data):
    from sai_mlflow.app.train import settings as _settings

    cfg = load_config(None, [f"data={synthetic_data}", "model=yolov8n.yaml", "tracking.memory_interval_s=2",
                             "guard.stop_on=[memory_over_limit]"])
    s = _settings(cfg, "sqlite:////tmp/x.db", "e", None, "")
    assert s.memory_interval_s == 2 and s.guard_stop_on == "memory_over_limit"
    assert s.tracking_uri == "sqlite:////tmp/x.db"


def test_the_trainer_refuses_bad_settings_instead_of_training_untracked(monkeypatch, synthetic_data, tmp_path):
    from sai_mlflow.trainer import TrackedDetectionTrainer

    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("SAI_MLFLOW_PUBLISH_INTERVAL_S", "fast")
    with pytest.raises(SettingsError, match="SAI_MLFLOW_PUBLISH_INTERVAL_S"):
        TrackedDetectionTrainer(overrides={"model": "yolov8n.yaml", "data": str(synthetic_data), "device": "cpu",
                                           "project": str(tmp_path), "name": "t", "imgsz": 64})
