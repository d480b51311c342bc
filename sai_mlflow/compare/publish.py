"""A decision written back into MLflow, so the answer is visible where users look: the UI.

- `tag_runs`: each judged run gets `sai.verdict`, `sai.reasons` and its one-line verdict as the first
  paragraph of its MLflow description (what the description said before is kept below it);
- `log_report`: a `run_kind=decision` run holding the verdict markdown, the JSON, the plot and links
  to the runs it judged; judging the same runs again updates that run instead of adding a twin.

Links written here are relative (`#/experiments/…`, ui_links.RELATIVE): the UI resolves them against
wherever it is served, so they work on every host and port.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .. import keys as K
from ..ui_links import RELATIVE, run_url
from . import render
from .decision import Decision
from .text import with_lead_note

VERDICT_MARK = "**compare-runs verdict:**"


def with_verdict(existing: str | None, line: str) -> str:
    """Pure: the verdict paragraph first, then the old description (a previous verdict is replaced)."""
    return with_lead_note(existing, VERDICT_MARK, line)


def links_md(d: Decision, ui: str = RELATIVE) -> str:
    """A markdown list: each judged run, linked, with its verdict line."""
    describe = render.describer(d.verdicts)
    return "\n".join(
        f"- [{v.record.label}]({run_url(ui, v.record.experiment_id or '0', v.run_id)}) — "
        f"{render.verdict_line(v, d, describe)}" for v in d.verdicts)


def tag_runs(client, d: Decision, report_url: str | None = None) -> int:
    """Verdict tags and description on every judged run; returns how many were written."""
    from ..backend import log_records

    describe = render.describer(d.verdicts)
    for v in d.verdicts:
        line = render.verdict_line(v, d, describe) + (f" [Decision report]({report_url})" if report_url else "")
        old = client.get_run(v.run_id).data.tags.get(K.TAG_DESCRIPTION)
        log_records(client, v.run_id, tags={K.TAG_VERDICT: v.verdict, K.TAG_REASONS: ",".join(v.codes()) or "none",
                                            K.TAG_DESCRIPTION: with_verdict(old, line)})
    return len(d.verdicts)


def decision_run_name(d: Decision) -> str:
    if d.recommended is None:
        return "decision: no run acceptable"
    return f"decision: {render.describer(d.verdicts)(d.recommended)} recommended"


def judged_runs_tag(d: Decision) -> str:
    return ",".join(v.run_id for v in d.verdicts)[:5000]


def find_report(client, experiment_id: str, judged: str) -> str | None:
    """The decision run already written for exactly these judged runs (the newest), else None."""
    hits = client.search_runs([experiment_id], filter_string=f"tags.{K.TAG_RUN_KIND} = '{K.RUN_KIND_DECISION}'",
                              order_by=["attributes.start_time DESC"], max_results=1000)
    want = set(judged.split(","))
    return next((r.info.run_id for r in hits if set(r.data.tags.get(K.TAG_JUDGED_RUNS, "").split(",")) == want), None)


def log_report(client, d: Decision, experiment_id: str, series: dict | None, extra_json: dict | None = None) -> str:
    """Create (or, for the same judged runs, update) the decision run with its artifacts; returns its run id."""
    from ..backend import log_records, source_tags

    rec = d.recommended.run_id if d.recommended is not None else "none"
    judged = judged_runs_tag(d)
    rid = find_report(client, experiment_id, judged)
    if rid is None:
        tags = source_tags({K.TAG_RUN_KIND: K.RUN_KIND_DECISION, K.TAG_JUDGED_RUNS: judged,
                            K.TAG_RECOMMENDED_RUN: rec})
        rid = client.create_run(experiment_id, run_name=decision_run_name(d), tags=tags).info.run_id
    else:
        client.update_run(rid, status="RUNNING", name=decision_run_name(d))
    body = f"{render.verdict_paragraph(d)}\n\n**Judged runs**\n\n{links_md(d)}\n"
    try:
        log_records(client, rid, tags={K.TAG_DESCRIPTION: body[:50000], K.TAG_RECOMMENDED_RUN: rec})
        with tempfile.TemporaryDirectory(prefix="sai_decision_") as tmp:
            out = Path(tmp)
            md = render.to_markdown(d) + "\n## Judged runs\n\n" + links_md(d) + "\n"
            (out / K.ARTIFACT_DECISION_MD).write_text(md)
            obj = {**render.to_json_obj(d), **(extra_json or {})}
            (out / K.ARTIFACT_DECISION_JSON).write_text(json.dumps(obj, indent=2, ensure_ascii=False))
            if series is not None:
                render.plot(d, series, str(out / K.ARTIFACT_DECISION_PLOT))
            client.log_artifacts(rid, tmp)
        client.set_terminated(rid, "FINISHED")
    except Exception:
        client.set_terminated(rid, "FAILED")
        raise
    return rid
