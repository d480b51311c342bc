"""Advice that cannot be absurd (issue 17, item 4, 2nd and 3rd bullets; item 5's cost line and ±inf).

- the guard's "largest safe batch" comes from a fit with a fixed part, else it says "probe": one run's peak
  scaled in proportion to the batch under-states a smaller batch's peak, so 8 -> 7 -> 6 each trip again;
- when memory barely grows with the batch (a CPU box), every tool says so instead of a number;
- the cost line never compares against an implausible run; ±1.8e308 (a clamped inf) reads as inf.
"""

from __future__ import annotations

import re
import sys

from sai_mlflow import keys as K
from sai_mlflow.compare import render
from sai_mlflow.compare.decision import decide, duration_text, pct
from sai_mlflow.compare.memfit import fit_peak_memory
from sai_mlflow.compare.policy import Policy
from sai_mlflow.compare.record import record_from_keys
from sai_mlflow.preflight import ForecastRecord, HostInfo, PreflightContext, run_checks
from sai_mlflow.training.guard import Guard, history_fit

P = Policy()
TOTAL = 20.0          # GiB per device
FIXED, PER_IMAGE = 10.0, 1.0  # the true memory: 10 GiB fixed + 1 GiB per image; limit 0.9 x 20 = 18 GiB -> 8


def true_peak(batch: int) -> float:
    return FIXED + PER_IMAGE * batch


def run_at(batch: int, peak: float | None = None, total: float = TOTAL, source: str = "nvml", **tags):
    peak = true_peak(batch) if peak is None else peak
    t = {K.TAG_BATCH_SIZE: str(batch), K.TAG_BATCH_SIZE_EFFECTIVE: str(batch), K.TAG_MEMORY_SOURCE: source,
         K.TAG_CACHE_MODE: "none", K.TAG_DATA_ON_TMPFS: "false", K.TAG_MODEL: "m", K.TAG_IMGSZ: "640",
         K.TAG_GPU: "g", K.TAG_DATASET_DIGEST: "d", **tags}
    return record_from_keys(f"b{batch}", t, {K.SUMMARY_PEAK_GIB: peak, K.SUMMARY_TOTAL_GIB: total,
                                             K.SUMMARY_PEAK_FRACTION: peak / total, K.SUMMARY_ETA_FULL_S: 3600.0},
                            status="RUNNING", run_name=f"b{batch}")


def memory_alert(guard: Guard, batch: int):
    return next((a for a in guard.judge(run_at(batch)) if a.reason.code == "memory_over_limit"), None)


def advised(line: str) -> int | None:
    m = re.search(r"--set batch=(\d+)", line)
    return int(m.group(1)) if m else None


def test_one_run_alone_advises_probing_not_a_batch_that_trips_again():
    alert = memory_alert(Guard(P), 10)  # 20 GiB at batch 10: over 18
    assert alert is not None
    # before: 18 / (20 / 10) = 9, and true_peak(9) = 19 > 18: the advice tripped the guard again (then 8 ...)
    assert advised(alert.line) is None
    assert "one run cannot tell" in alert.line and "sai-mlflow probe --batches 5,7" in alert.line


def test_with_a_fit_the_advised_batch_stays_under_the_limit():
    fit = history_fit([ForecastRecord(4, true_peak(4), TOTAL, "m", 640, "g"),
                       ForecastRecord(6, true_peak(6), TOTAL, "m", 640, "g")])
    batch = 12
    for _ in range(3):  # follow the advice: it must not trip the guard again
        alert = memory_alert(Guard(P, memory_fit=fit), batch)
        if alert is None:
            break
        nxt = advised(alert.line)
        assert nxt is not None and nxt < batch, alert.line
        batch = nxt
    assert batch == 8 and memory_alert(Guard(P, memory_fit=fit), batch) is None


def test_with_a_fit_per_device_the_advice_is_the_total_for_the_devices():
    fit = history_fit([ForecastRecord(16, true_peak(4), TOTAL, "m", 640, "g", devices=4),
                       ForecastRecord(6, true_peak(6), TOTAL, "m", 640, "g")])
    assert fit.batches == (4, 6)
    rec = run_at(40, peak=true_peak(10), **{K.TAG_DEVICES: "4"})
    (alert,) = [a for a in Guard(P, memory_fit=fit).judge(rec) if a.reason.code == "memory_over_limit"]
    assert "largest safe batch 32 (8 per device on 4 devices)" in alert.line and advised(alert.line) == 32


# --- memory that barely grows with the batch (a CPU box) ------------------------------------------------

CPU = [(4, 2.00), (8, 2.05)]  # RSS at batch 4 and 8 of 24 GiB host RAM: the line's "largest batch" is ~1570


def test_compare_runs_says_memory_sets_no_limit_instead_of_a_number():
    runs = [run_at(b, peak=g, total=24.0, source="rss") for b, g in CPU]
    d = decide(runs, P)
    assert d.fit is not None and d.fit.flat and d.suggested_batch is None and d.suggested_batch_per_device is None
    words = render.verdict_paragraph(d)
    assert "memory barely grows with the batch" in words and "no batch limit" in words.lower()
    assert render.to_json_obj(d)["suggested_batch"] is None


def test_preflight_says_so_too(tmp_path):
    history = [ForecastRecord(b, g, 24.0, "yolov8n.yaml", 64, "cpu") for b, g in CPU]
    host = HostInfo(cpu_count=2, ram_total=24 * 2**30, ram_available=20 * 2**30, tmpfs_used=0, gpus=[])
    args = dict(data=str(tmp_path / "none.yaml"), model="yolov8n.yaml", batch=16, imgsz=64, device="cpu")
    (f,) = [x for x in run_checks(PreflightContext(args=args, host=host, history=history))
            if x.code == "memory_forecast"]
    assert f.level == "info" and "memory barely grows with the batch" in f.message
    assert "largest batch predicted to fit" not in f.message


def test_the_guard_says_so_with_a_flat_fit():
    fit = fit_peak_memory(CPU)
    rec = run_at(8, peak=23.0, total=24.0, source="rss")
    (alert,) = [a for a in Guard(P, memory_fit=fit).judge(rec) if a.reason.code == "memory_over_limit"]
    assert "memory barely grows with the batch" in alert.line and advised(alert.line) is None


def test_a_gpu_fit_still_gives_a_number():
    fit = fit_peak_memory([(32, 37.2), (64, 72.8)])
    assert not fit.flat and fit.largest_batch_under(126.0) == 111


# --- the cost line and infinities --------------------------------------------------------------------------

def test_the_cost_line_never_compares_against_an_implausible_run():
    good = run_at(8)
    good.status = "FINISHED"
    bad = record_from_keys("neg", {K.TAG_BATCH_SIZE: "16", K.TAG_BATCH_SIZE_EFFECTIVE: "16", K.TAG_MODEL: "m",
                                   K.TAG_IMGSZ: "640", K.TAG_GPU: "g", K.TAG_DATASET_DIGEST: "d"},
                           {K.SUMMARY_ETA_FULL_S: -5.0}, run_name="neg")
    good.eta_full_s = 1008.0
    d = decide([good, bad], P)
    assert d.recommended.run_id == "b8" and d.by_id("neg").reason("implausible") is not None
    words = render.verdict_paragraph(d)
    assert "cost:" not in words and "-5 s" not in words  # before: "cost: +16.8 min (16.8 min projected vs -5 s)"
    assert "Also rejected: batch 16" in words


CLAMPED = sys.float_info.max  # 1.7976931348623157e308: how SQL stores keep +inf ("1.8e+308")


def test_infinities_read_as_inf():
    assert duration_text(CLAMPED) == "inf s" and duration_text(-CLAMPED) == "-inf s"
    assert pct(CLAMPED) == "inf %" and render._f(CLAMPED, ".1f") == "inf" and render._f(-CLAMPED, ".1f") == "-inf"
    r = run_at(8)
    r.eta_full_s = CLAMPED
    text = render.to_markdown(decide([r, run_at(4)], P))
    assert "1.8e+308" not in text and "inf" in text
