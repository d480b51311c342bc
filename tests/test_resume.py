"""Resume: the same MLflow run continues with strictly increasing steps; a different batch is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT, cli_in_process, run_cli, smoke_args

from sai_mlflow import keys as K
from sai_mlflow.telemetry.steady_memory import steady_memory

pytestmark = pytest.mark.slow


def _interrupted_run(tmp, synthetic_data, batch, epochs: int = 3):
    """A run killed by Ctrl-C after epoch 1 (last.pt holds epoch 1): (uri, client, run id, last.pt)."""
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    script = textwrap.dedent(f"""
        import os
        os.environ["MLFLOW_TRACKING_URI"] = {uri!r}
        os.environ["SAI_MLFLOW_PUBLISH_INTERVAL_S"] = "1"
        from sai_mlflow.trainer import TrackedDetectionTrainer
        t = TrackedDetectionTrainer(overrides=dict(model="yolov8n.yaml", data={str(synthetic_data)!r}, epochs={epochs},
            batch={batch!r}, imgsz=64, device="cpu", workers=0, plots=False, amp=False, project={str(tmp / 'runs')!r}))
        def stop(trainer):
            if trainer.epoch == 0:
                raise KeyboardInterrupt
        t.add_callback("on_fit_epoch_end", stop)
        t.train()
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "YOLO_OFFLINE": "1"})
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr, proc.stderr[-2000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "KILLED"
    return uri, client, run.info.run_id, tmp / "runs" / "train" / "weights" / "last.pt"


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, synthetic_data):
    """A 3-epoch run at batch 8 killed by Ctrl-C after epoch 1."""
    tmp = tmp_path_factory.mktemp("resume")
    return (tmp, *_interrupted_run(tmp, synthetic_data, 8))


def test_an_autobatch_run_resumed_keeps_its_request(tmp_path, synthetic_data):
    """The checkpoint's args hold the batch AutoBatch settled on; the run's batch_size stays the request (-1)."""
    uri, client, run_id, last = _interrupted_run(tmp_path, synthetic_data, -1, epochs=2)
    assert client.get_run(run_id).data.tags[K.TAG_BATCH_SIZE] == "-1"
    proc = run_cli("train", "--config", str(ROOT / "configs" / "cpu_smoke.yaml"),
                   "--resume", str(last), "--tracking-uri", uri, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tags = client.get_run(run_id).data.tags
    assert (tags[K.TAG_BATCH_SIZE], tags[K.TAG_BATCH_SIZE_EFFECTIVE]) == ("-1", "16"), tags


def test_a_different_batch_on_resume_is_refused(interrupted, synthetic_data):
    tmp, uri, client, run_id, last = interrupted
    proc = cli_in_process(*smoke_args(tmp, synthetic_data), "--set", "batch=4", "--resume", str(last),
                          "--tracking-uri", uri, cwd=tmp)  # a refusal before training: no process of its own
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "trained at batch 8" in proc.stderr and "restart from epoch 0" in proc.stderr
    assert client.get_run(run_id).info.status == "KILLED"  # nothing was started


def test_resume_continues_the_same_run_with_strictly_increasing_steps(interrupted, synthetic_data):
    tmp, uri, client, run_id, last = interrupted
    proc = run_cli("train", "--config", str(ROOT / "configs" / "cpu_smoke.yaml"),
                   "--resume", str(last), "--tracking-uri", uri, cwd=tmp, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_id for r in runs] == [run_id]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in sorted(client.get_metric_history(run_id, K.BATCH_STEP_S), key=lambda m: m.timestamp)]
    assert steps == sorted(set(steps)), "steps overlap or go backwards"
    assert steps[-1] == len(steps) - 1 == 3 * 4 - 1
    epochs = sorted(m.step for m in client.get_metric_history(run_id, K.VAL_MAP50))
    assert epochs == [1, 2, 3]
    assert run.data.metrics[K.SUMMARY_EPOCHS_COMPLETED] == 3
    mem = sorted(client.get_metric_history(run_id, K.MEMORY_USED_GIB), key=lambda m: m.step)
    assert [m.step for m in mem] == list(range(len(mem)))  # the memory samples go on where they stopped
    counted = run.data.metrics.get(K.SUMMARY_MEMORY_SAMPLES)
    if counted == len(mem):  # the steady half lies in the resumed session: its figures are the whole series'
        steady = steady_memory([(m.timestamp / 1000.0, m.value) for m in mem[len(mem) // 2:]])
        assert run.data.metrics[K.SUMMARY_MEMORY_STEADY_SPAN_S] == pytest.approx(steady.span_s, abs=1e-3)
    else:  # else no figures, or the first session's: compare-runs reads the series (reasons.summary_covers_memory)
        assert counted is None or counted < len(mem)


def test_sigkill_mid_epoch_then_resume_same_run_no_overlap(tmp_path, synthetic_data):
    """SIGKILL in the middle of epoch 2; `--resume` uploads the killed run's spool first, then goes on."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    script = textwrap.dedent(f"""
        import os, signal
        os.environ["MLFLOW_TRACKING_URI"] = {uri!r}
        os.environ["SAI_MLFLOW_PUBLISH_INTERVAL_S"] = "0.2"
        os.environ["SAI_MLFLOW_LOG_MODEL"] = "0"
        from sai_mlflow.trainer import TrackedDetectionTrainer
        t = TrackedDetectionTrainer(overrides=dict(model="yolov8n.yaml", data={str(synthetic_data)!r}, epochs=3,
            batch=8, imgsz=64, device="cpu", workers=0, plots=False, amp=False, project={str(tmp_path / 'runs')!r}))
        from sai_mlflow import keys as K
        from sai_mlflow.tracking.spool import read_records, spool_root
        seen = []
        def kill(trainer):
            seen.append(trainer.epoch)
            if trainer.epoch == 1 and seen.count(1) == 2:  # batch 6 of 8 (4 per epoch)
                import time
                log = spool_root() / trainer.sai_tracker.run_id / "spool.log"
                deadline = time.monotonic() + 120  # the publisher spools all 6 on its own; the deadline ends a hang
                while time.monotonic() < deadline:
                    steps = {{p[3] for _, r in read_records(log) if r["t"] == "m" for p in r["p"]
                             if p[0] == K.BATCH_STEP_S}} if log.exists() else set()
                    if len(steps) >= len(seen):
                        break
                    time.sleep(0.05)
                os.kill(os.getpid(), signal.SIGKILL)
        t.add_callback("on_train_batch_end", kill)
        t.train()
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "YOLO_OFFLINE": "1"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    last = tmp_path / "runs" / "train" / "weights" / "last.pt"
    proc = run_cli("train", "--config", str(ROOT / "configs" / "cpu_smoke.yaml"), "--resume", str(last),
                   "--tracking-uri", uri, "--set", "tracking.log_model=false", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    steps = [m.step for m in sorted(client.get_metric_history(run.info.run_id, K.BATCH_STEP_S),
                                    key=lambda m: m.timestamp)]
    assert steps == sorted(set(steps)), "steps overlap or go backwards"
    # epoch 1 (4), the killed part of epoch 2 (2, only in the killed run's spool), then epochs 2 and 3 again (8)
    assert steps == list(range(4 + 2 + 8))
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, K.VAL_MAP50)) == [1, 2, 3]
