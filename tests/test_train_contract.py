"""Real CPU training through the `sai-mlflow train` command into a real sqlite store, read back with MlflowClient."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from helpers import AS_A_USER, BATCH, EPOCHS, run_cli, smoke_args

from sai_mlflow import keys as K

TRAIN_IMAGES = 32
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_data):
    tmp = tmp_path_factory.mktemp("train")
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    # as a user runs it: no pytest in the child's environment (Ultralytics' MLflow callback would return early),
    # MLflow's own variable pointing at the same store (where that callback would log a second run)
    proc = run_cli(*smoke_args(tmp, synthetic_data), "--tracking-uri", uri, cwd=tmp,
                   env={"MLFLOW_TRACKING_URI": uri, "YOLO_CONFIG_DIR": str(tmp / "yolo-settings")}, drop_env=AS_A_USER)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return client, runs, proc, tmp


def history(client, run, key):
    return sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))


def test_one_run_finished_and_no_duplicate_from_ultralytics_own_callback(trained):
    client, runs, _, _ = trained
    assert len(runs) == 1  # Ultralytics' callback would add a run named after the project to this same store
    assert runs[0].info.status == "FINISHED"
    assert {e.name for e in client.search_experiments()} == {"Default", "sai-smoke"}


def test_every_contract_tag(trained):
    _, runs, _, _ = trained
    tags = runs[0].data.tags
    for t in K.CONTRACT_TAGS:
        assert t in tags, t
    assert tags[K.TAG_BATCH_SIZE] == str(BATCH) == tags[K.TAG_BATCH_SIZE_EFFECTIVE]
    assert tags[K.TAG_CACHE_MODE] == "none"
    assert tags[K.TAG_DATA_ON_TMPFS] in ("true", "false")
    assert tags[K.TAG_GPU] == "cpu" and tags[K.TAG_MEMORY_SOURCE] == "rss"
    assert tags[K.TAG_MODEL] == "yolov8n.yaml" and tags[K.TAG_IMGSZ] == "64"
    assert tags[K.TAG_RUN_KIND] == "train" and tags[K.TAG_STAGE] == "smoke"
    assert len(tags[K.TAG_DATASET_DIGEST]) == 16
    # train's preflight findings travel with the run (set before the run existed, published when it opens)
    assert tags[K.TAG_PREFLIGHT_PREFIX + "memory_forecast"].startswith("info: no forecast")


def test_every_resolved_trainer_argument_and_env_and_data_params(trained):
    _, runs, _, tmp = trained
    params = runs[0].data.params
    args = yaml.safe_load((tmp / "runs" / "train" / "args.yaml").read_text())
    missing = [k for k in args if k not in params]
    assert missing == []
    for k in K.ENV_PARAMS + K.DATA_PARAMS:
        assert k in params, k
    assert params["data.train_images"] == str(TRAIN_IMAGES)
    assert params["batch"] == str(BATCH)


def test_one_step_point_per_batch(trained):
    client, runs, _, _ = trained
    run = runs[0]
    nb = int(run.data.metrics[K.SUMMARY_BATCHES_PER_EPOCH])
    assert nb == TRAIN_IMAGES // BATCH
    for key in K.BATCH_KEYS:
        steps = [m.step for m in history(client, run, key)]
        assert steps == list(range(EPOCHS * nb)), key
    for w, c, s in zip(history(client, run, K.BATCH_DATA_WAIT_S), history(client, run, K.BATCH_COMPUTE_S),
                       history(client, run, K.BATCH_STEP_S)):
        assert s.value == pytest.approx(w.value + c.value)


def test_epoch_metrics_cover_epochs_1_to_n(trained):
    client, runs, _, _ = trained
    for key in K.EPOCH_KEYS:
        assert [m.step for m in history(client, runs[0], key)] == list(range(1, EPOCHS + 1)), key


def test_summary_is_consistent(trained):
    client, runs, _, _ = trained
    m = runs[0].data.metrics
    for key in K.SUMMARY_KEYS:
        assert key in m, key
    # the steady-memory figures cover exactly the series the store holds, so compare-runs needs no series
    assert m[K.SUMMARY_MEMORY_SAMPLES] == len(history(client, runs[0], K.MEMORY_USED_GIB))
    assert m[K.SUMMARY_IMAGES_PER_S] == pytest.approx(BATCH / m[K.SUMMARY_STEP_S_STEADY])
    assert m[K.SUMMARY_EPOCHS_COMPLETED] == EPOCHS == m[K.SUMMARY_EPOCHS_PLANNED]
    assert 0 < m[K.SUMMARY_PEAK_FRACTION] < 1


def test_peaks_are_at_least_the_samples(trained):
    client, runs, _, _ = trained
    run = runs[0]
    samples = [p.value for p in history(client, run, K.MEMORY_USED_GIB)]
    assert len(samples) >= 3
    assert [p.step for p in history(client, run, K.MEMORY_USED_GIB)] == list(range(len(samples)))
    peak = run.data.metrics[K.SUMMARY_PEAK_GIB]
    assert peak >= max(samples) - 1e-9
    assert max(p.value for p in history(client, run, K.MEMORY_WINDOW_PEAK_GIB)) == pytest.approx(max(samples))
    for key in (K.EPOCH_TRAIN_PEAK_GIB, K.EPOCH_VAL_PEAK_GIB):
        assert all(0 < p.value <= peak + 1e-9 for p in history(client, run, key))


def test_artifacts_and_dataset_input(trained):
    client, runs, _, _ = trained
    run_id = runs[0].info.run_id
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"weights", "results.csv", "args.yaml", "batch_timings.csv", "memory_timeline.png"} <= names
    assert {a.path for a in client.list_artifacts(run_id, "weights")} >= {"weights/best.pt", "weights/last.pt"}
    inputs = client.get_run(run_id).inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest == runs[0].data.tags[K.TAG_DATASET_DIGEST]


def test_says_how_to_look(trained):
    _, runs, proc, _ = trained
    assert runs[0].info.run_id in proc.stderr
    assert "sai-mlflow ui --tracking-uri" in proc.stderr


@pytest.mark.parametrize("extra,needle", [
    (["--set", "btch=4"], "did you mean 'batch'"),
    (["--set", "epochs=three"], "epochs"),
    (["--set", "batch=-8"], "positive whole number"),
    (["--set", "data=/nonexistent/data.yaml", "--set", "synthetic=null"], "does not exist"),
])
def test_bad_config_is_one_clear_error_exit_2_nothing_started(tmp_path, synthetic_data, extra, needle):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    proc = run_cli(*smoke_args(tmp_path, synthetic_data), *extra, "--tracking-uri", uri, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "runs").exists()


def test_unreachable_store_training_completes_spools_and_syncs_later(tmp_path, synthetic_data):
    proc = run_cli(*smoke_args(tmp_path, synthetic_data), "--set", "epochs=1", "--skip-preflight",
                   "--tracking-uri", "http://127.0.0.1:9", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert out.count("spooled locally as local-") == 1
    assert "sai-mlflow sync" in out
    assert (tmp_path / "runs" / "train" / "weights" / "last.pt").exists()
    # the store comes back (here: a good local one): sync creates the run with everything that was logged
    good = f"sqlite:///{tmp_path / 'good' / 'mlflow.db'}"
    sync = run_cli("sync", "--tracking-uri", good, cwd=tmp_path, timeout=300)
    assert sync.returncode == 0, sync.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(good)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    assert run.data.tags[K.TAG_RUN_KIND] == "train" and K.TAG_DATASET_DIGEST in run.data.tags
    # MLflow's system metrics went through the spool too (their sampler never talks to the store itself)
    assert any(k.startswith(K.SYSTEM_METRICS_PREFIX) for k in run.data.metrics)
    nb = int(run.data.metrics[K.SUMMARY_BATCHES_PER_EPOCH])
    assert [m.step for m in client.get_metric_history(run.info.run_id, K.BATCH_STEP_S)] == list(range(nb))
    from sai_mlflow.model import find_run_model

    assert find_run_model(client, run).startswith("models:/")  # a run trained offline gets its model at sync


def test_unwritable_store_training_completes_and_says_so_once(tmp_path, synthetic_data):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the store's folder should be")  # unwritable even for root
    proc = run_cli(*smoke_args(tmp_path, synthetic_data), "--set", "epochs=1", "--skip-preflight",
                   "--tracking-uri", f"sqlite:///{blocker / 'mlflow.db'}", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("spooled locally as local-") == 1
    assert (tmp_path / "runs" / "train" / "weights" / "last.pt").exists()


def test_a_finished_run_carries_its_model_for_promotion(trained):
    from sai_mlflow.model import find_run_model

    client, runs, _, _ = trained
    assert find_run_model(client, runs[0]).startswith("models:/")


def test_train_refuses_the_seed_double_cache_before_building_a_model(tmp_path):
    """Images on a tmpfs plus cache=ram: preflight's error stops `train`, exit 1, no run, no weights."""
    import shutil
    import tempfile

    from sai_mlflow.data.synthetic import SyntheticSpec, generate

    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm tmpfs on this machine")
    shm = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="sai_test_"))
    try:
        data = generate(shm / "data", SyntheticSpec(train=8, val=4, width=64, height=48))
        uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
        proc = run_cli(*smoke_args(tmp_path, data), "--set", "cache=ram", "--tracking-uri", uri, cwd=tmp_path,
                       timeout=300)
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "double_cache" in proc.stderr and "nothing was started" in proc.stderr
        assert not (tmp_path / "runs").exists()
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def test_run_report_memory_reference_lines_system_metrics_and_links(trained):
    client, runs, proc, tmp = trained
    run = runs[0]
    rid = run.info.run_id
    arts = {a.path for a in client.list_artifacts(rid)}
    assert {K.ARTIFACT_SUMMARY_MD, K.ARTIFACT_RUN_PLOT, K.ARTIFACT_MEMORY_TIMELINE} <= arts
    md = (tmp / "runs" / "train" / K.ARTIFACT_SUMMARY_MD).read_text()
    assert "s/batch" in md and "projected time for all planned epochs" in md and " h)" in md
    used = [m.step for m in history(client, run, K.MEMORY_USED_GIB)]
    for key in (K.MEMORY_TOTAL_GIB, K.MEMORY_LIMIT_GIB):
        assert [m.step for m in history(client, run, key)] == used, key
    total = run.data.metrics[K.MEMORY_TOTAL_GIB]
    assert run.data.metrics[K.MEMORY_LIMIT_GIB] == pytest.approx(0.9 * total)
    assert any(k.startswith(K.SYSTEM_METRICS_PREFIX + "cpu_") for k in run.data.metrics)
    assert run.data.tags["mlflow.user"] and run.data.tags["mlflow.source.type"] == "LOCAL"
    link = f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{rid}?workflowType=machine_learning"
    assert link in proc.stderr
    (model,) = client.search_logged_models([run.info.experiment_id])
    assert model.name == run.info.run_name  # named after its run, not "model"
    assert {m.key for m in model.metrics} >= {K.SUMMARY_BEST_MAP50, K.SUMMARY_STEP_S_STEADY}
    assert {m.dataset_digest for m in model.metrics} == {run.data.tags[K.TAG_DATASET_DIGEST]}
