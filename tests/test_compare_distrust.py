"""compare-runs distrusts impossible figures (issue 9, item 13): never ranked, never recommended, sane widths.

Runs are logged into a real sqlite store the way a tracked run is (test_compare_e2e.log_run), with the
adversarial pass's figures; an imported Ultralytics dir whose clock ran backwards goes through the importer.
"""

from __future__ import annotations

import json
import re

from click.testing import CliRunner
from test_compare_e2e import EXP, log_run

from sai_mlflow import keys as K
from sai_mlflow.cli import cli

BAD = {
    "abc-batch": {"tags": {K.TAG_BATCH_SIZE: "abc", K.TAG_BATCH_SIZE_EFFECTIVE: "abc"}},
    "weird-cache": {"tags": {K.TAG_CACHE_MODE: "weird"}},
    "negative-eta": {"summary": {K.SUMMARY_ETA_FULL_S: -50.0}},
    "huge": {"summary": {K.SUMMARY_ETA_FULL_S: 1.8e308, K.SUMMARY_IMAGES_PER_S: -1.8e308,
                         K.SUMMARY_PEAK_GIB: 1.8e308}},
    "nan-speed": {"summary": {K.SUMMARY_ETA_FULL_S: float("nan"), K.SUMMARY_IMAGES_PER_S: 100.0}},
    "map-over-1": {"summary": {K.SUMMARY_BEST_MAP50: 7.0}},
}


def compare(client, *extra):
    return CliRunner().invoke(cli, ["compare-runs", "--experiment", EXP, "--tracking-uri", client.tracking_uri,
                                    *extra])


def test_impossible_figures_are_not_judged_and_never_recommended(client):
    honest = log_run(client, "honest", batch=32, summary={K.SUMMARY_ETA_FULL_S: 7200.0})
    bad = {name: log_run(client, name, batch=32, **kw) for name, kw in BAD.items()}
    res = compare(client, "--format", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["recommended"]["run_id"] == honest
    runs = {r["run_id"]: r for r in out["runs"]}
    for name, rid in bad.items():
        r = runs[rid]
        assert r["verdict"] == "rejected", (name, r)
        (reason,) = [x for x in r["reasons"] if x["code"] == "implausible"]
        assert reason["severity"] == "reject" and reason["message"].startswith("not judged:"), (name, reason)
    # an impossible time sets no yardstick: the honest run is not "too slow" next to -50 s
    assert not any(x["code"] == "too_slow" and x["severity"] == "warn" for x in runs[honest]["reasons"])


def test_table_and_markdown_keep_a_sane_width(client):
    log_run(client, "honest", batch=32)
    log_run(client, "huge", batch=32, **BAD["huge"])
    for fmt in ("table", "markdown"):
        res = compare(client, "--format", fmt, "--width", "400")
        assert res.exit_code == 0, res.output
        assert "inf" in res.output and "1.8e+308" not in res.output and "1.8e308" not in res.output, res.output
        digits = max(len(x) for x in re.findall(r"[\d.,]+", res.output))
        assert digits < 20, f"{fmt}: a {digits}-character number"  # before: 309 digits


def test_imported_dir_whose_clock_ran_backwards_is_never_fastest(client, tmp_path):
    """results.csv `time` going back (Ultralytics restarts it on --resume) is read as a restart, not -50 s."""
    from test_import_ultralytics import HEADER

    from sai_mlflow.importers.ultralytics_dir import import_run_dir

    d = tmp_path / "back"
    d.mkdir()
    (d / "args.yaml").write_text("model: yolov8n.yaml\nbatch: 16\nepochs: 4\nimgsz: 640\ncache: false\n")
    rows = [HEADER] + [f"{e},{t},1,1,1,0.5,0.5,0.4,0.2,1,1,1,0.01,0.01,0.01"
                       for e, t in ((1, 100.0), (2, 200.0), (3, 50.0), (4, 150.0))]
    (d / "results.csv").write_text("\n".join(rows) + "\n")
    res = import_run_dir(client, d, EXP, weights=False)
    durations = [m.value for m in client.get_metric_history(res.run_id, K.EPOCH_DURATION_S)]
    assert sorted(durations) == [50.0, 100.0, 100.0, 100.0] and min(durations) > 0
    eta = client.get_run(res.run_id).data.metrics[K.SUMMARY_ETA_FULL_S]
    assert eta == 4 * 100.0


def test_a_very_long_table_is_plain_text_with_every_run():
    """Past RICH_TABLE_MAX_ROWS the table is fixed-width text (rich cost ~8 ms a row: 10,000 runs over a minute)."""
    import io

    from rich.console import Console

    from sai_mlflow.compare import render
    from sai_mlflow.compare.decision import RunRecord, decide
    from sai_mlflow.compare.policy import load_policy

    n = render.RICH_TABLE_MAX_ROWS + 1
    recs = [RunRecord(run_id=f"{i:032x}", run_name=f"run-{i}", model="m", imgsz=640, dataset_digest="d", gpu="g",
                      batch_size=8, batch_size_effective=8, cache_mode="none", data_on_tmpfs=False,
                      images_per_s=10.0 + i, eta_full_s=1000.0 + i, best_map50=0.5) for i in range(n)]
    d = decide(recs, load_policy(None))
    buf = io.StringIO()
    render.render_table(d, Console(file=buf, width=180))
    out = buf.getvalue()
    rows = [line for line in out.splitlines() if re.match(r"[* ] run-\d+\s", line)]
    assert len(rows) == n
    assert [line for line in rows if line.startswith("*")] == [next(r for r in rows if "run-0 " in r)]
    assert "Recommended: " in out
