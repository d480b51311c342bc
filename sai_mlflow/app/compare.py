"""The judging and import flows: `compare-runs` (read, decide, link, optionally log the decision run and tag the
runs), `import-history` and `import-ultralytics` (files and run folders -> runs with the contract's keys)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ..errors import UserError
from .store import client_for, reader_for, refusals


def links(ui: str, decision) -> dict:
    """Deep links for a decision: the compare view of exactly the judged runs, and each run."""
    from ..ui_links import compare_url, run_url

    recs = [v.record for v in decision.verdicts]
    return {"ui": ui,
            "compare": compare_url(ui, [r.experiment_id or "0" for r in recs], [r.run_id for r in recs]),
            "recommended": (run_url(ui, decision.recommended.record.experiment_id or "0", decision.recommended.run_id)
                            if decision.recommended is not None else None),
            "decision_run": None,
            "runs": {r.run_id: run_url(ui, r.experiment_id or "0", r.run_id) for r in recs}}


def public(links: dict) -> dict:
    """The links as the JSON and the decision run carry them (the UI base is not one)."""
    return {k: v for k, v in links.items() if k != "ui"}


@dataclass
class Judgement:
    """compare-runs' result: the decision, its links, the plotted series (when asked), and where it was written."""

    decision: object
    links: dict
    series: object | None
    client: object | None
    experiment_id: str | None
    decision_run_id: str | None


def judge(run_ids, experiment, filter_string, policy_overrides: dict, policy_file, *, tracking_uri, ui_url,
          want_series: bool, log_report: bool, tag_runs: bool) -> Judgement:
    """Read the runs, decide, link; with `log_report` the decision run is logged before anything is shown."""
    from ..compare.decision import decide
    from ..compare.loader import InputError, load_records, plot_series, split_evidence
    from ..compare.policy import PolicyError, load_policy
    from ..tracking.store import resolve_experiment
    from ..ui_links import RELATIVE, run_url, ui_base

    try:
        policy = load_policy(policy_file, policy_overrides)
    except PolicyError as e:
        raise UserError(str(e)) from None
    uri, reader = reader_for(tracking_uri)
    exp = None if run_ids else resolve_experiment(experiment)
    try:
        with refusals(uri, "reading these runs"):
            records = load_records(reader, run_ids, exp, filter_string, policy, progress=sys.stderr.isatty())
    except InputError as e:
        raise UserError(str(e)) from None
    records, probes = split_evidence(records)
    if not records:
        raise UserError(f"only probe runs here ({len(probes)}): probes are evidence, not trainings; "
                        "read their session with `sai-mlflow probe`'s report, or compare finished trainings")
    decision = decide(records, policy, evidence=probes)
    found = links(ui_base(ui_url, uri), decision)
    series = plot_series(reader, records) if (want_series or log_report) else None
    client = client_for(uri) if (log_report or tag_runs) else None  # writing: MLflow's client
    exp_id = rid = None
    if log_report:
        from ..compare.publish import log_report as write_report
        from ..tracking.store import get_or_create_experiment

        exp_id = records[0].experiment_id if run_ids else get_or_create_experiment(client, exp)
        try:  # what is stored inside MLflow links relatively (any host, any port)
            rid = write_report(client, decision, exp_id, series, {"links": public(links(RELATIVE, decision))})
        except Exception as e:  # a read-only or failing store: say so in one line, no traceback
            raise UserError(f"could not log the decision run ({type(e).__name__}: {str(e)[:300]})") from None
        found["decision_run"] = run_url(found["ui"], exp_id, rid)
    return Judgement(decision, found, series, client, exp_id, rid)


def tag_runs(j: Judgement) -> int:
    """Write the verdict back on the judged runs (tags and a one-line description); how many were tagged."""
    from ..compare.publish import tag_runs as write_tags
    from ..ui_links import RELATIVE, run_url

    decision_link = run_url(RELATIVE, j.experiment_id, j.decision_run_id) if j.decision_run_id else None
    try:
        with refusals(j.client.tracking_uri, "tagging these runs"):
            return write_tags(j.client, j.decision, decision_link)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"could not write the verdict tags ({type(e).__name__}: {str(e)[:300]})") from None


def read_histories(files) -> list:
    """Every history file validated and its runs built, before a store is opened: a refusal creates nothing."""
    from ..importers import ImportFailed
    from ..importers.history_file import read_history_file
    from .starters import resolve

    try:
        return [read_history_file(resolve(f)) for f in files]
    except ImportFailed as e:
        raise UserError(str(e)) from None


def import_history(client, histories, experiment):
    """Each history (`read_histories`)'s runs, logged as it is written (run_kind=replay): yields their results."""
    from ..importers import ImportFailed
    from ..importers.history_file import import_history_file

    for read in histories:
        try:
            with refusals(client.tracking_uri, "writing runs"):
                results = import_history_file(client, read, experiment)
        except ImportFailed as e:
            raise UserError(str(e)) from None
        yield from results


def read_run_dirs(run_dirs) -> list:
    """Every Ultralytics run folder read and checked, before a store is opened: a refusal creates nothing."""
    from ..importers import ImportFailed
    from ..importers.ultralytics_dir import read_run_dir

    try:
        return [read_run_dir(d) for d in run_dirs]
    except ImportFailed as e:
        raise UserError(str(e)) from None


def import_ultralytics(client, run_dirs, experiment, weights: bool):
    """Each Ultralytics run folder (`read_run_dirs`) logged as a run (run_kind=import): yields their results."""
    from ..importers import ImportFailed
    from ..importers.ultralytics_dir import import_run_dir
    from ..tracking.store import resolve_experiment

    exp = resolve_experiment(experiment)
    for d in run_dirs:
        try:
            with refusals(client.tracking_uri, "writing runs"):
                res = import_run_dir(client, d, exp, weights=weights)
        except ImportFailed as e:
            raise UserError(str(e)) from None
        yield res
