"""probe under DDP (issue 20 item 3): the config's device list, or `--devices I` for one device of a
multi-device plan (said, with its limit: DDP's communication buffers are not measured)."""

from __future__ import annotations

import pytest
from helpers import ROOT, cli_in_process

from sai_mlflow.probe.plan import PlanError, device_list, plan_devices
from sai_mlflow.probe.session import ProbeSpec, next_command


def test_device_lists_as_ultralytics_takes_them():
    assert device_list("0,1,2,3") == ["0", "1", "2", "3"]
    assert device_list([0, 1]) == ["0", "1"]
    assert device_list(0) == ["0"]
    assert device_list("cpu") == [] and device_list(None) == [] and device_list("") == []


def test_without_the_flag_each_probe_trains_on_the_config_devices():
    p = plan_devices("0,1,2,3", None)
    assert (p.probe_device, p.plan_devices, p.per_probe, p.note) == (None, 4, 1, None)
    assert plan_devices("cpu", None).plan_devices == 1


def test_one_device_for_a_four_device_plan_says_which_and_what_it_misses():
    p = plan_devices("0,1,2,3", "2")
    assert (p.probe_device, p.plan_devices, p.per_probe) == ("2", 4, 4)
    assert "device 2" in p.note and "4 devices" in p.note and "communication buffers are not measured" in p.note
    one = plan_devices("0", "0")
    assert (one.probe_device, one.per_probe, one.note) == ("0", 1, None)


@pytest.mark.parametrize("flag", ["0,1", "gpu0", "-1", ""])
def test_devices_takes_one_cuda_index(flag):
    with pytest.raises(PlanError, match="--devices"):
        plan_devices("0,1", flag)


def test_the_next_command_trains_the_plan_batch_on_every_device():
    spec = ProbeSpec(config_path="c.yaml", sets=["batch=16", "epochs=5"], args={}, audit=None, tracking_uri="",
                     experiment="e", stage="", policy=None, plan_factor=4)
    assert next_command(spec, 29) == "sai-mlflow train --config c.yaml --set epochs=5 --set batch=116"


def test_a_bad_devices_flag_exits_2_before_anything(tmp_path):
    r = cli_in_process("probe", "--config", str(ROOT / "configs" / "cpu_smoke.yaml"), "--batches", "2",
                       "--devices", "0,1", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")] == [ln for ln in r.stderr.splitlines()
                                                                              if "--devices" in ln]
    assert not (tmp_path / "m.db").exists()
