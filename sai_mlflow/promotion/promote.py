"""Promote a run's model to `model@alias` when it passes the gates; roll the alias back to its previous holder.

`promote` registers a version from the run's model, moves the alias and writes audit tags on the version;
`rollback` moves the alias back to the version that held it before. Both run under the promotion lock.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .. import keys as K
from ..backend import is_store_error
from ..compare.text import with_lead_note
from ..tracking.mlflow_errors import is_already_exists
from .gates import NONE, Evaluation, Gate, current_holder, evaluate, fmt, get_run
from .lock import now, promotion_lock, who
from .names import PromotionError, check_names

# audit tags written on a promoted version: few and short (the version table shows them); the gate
# table, policy, times and the compared run go into the version's description, as markdown
TAG_ALIAS = K.TAG_VERSION_ALIAS                 # the alias this version was promoted to
TAG_PREVIOUS_VERSION = K.TAG_VERSION_PREVIOUS  # the version that held it before, or none (rollback reads it)
TAG_GATES = K.TAG_VERSION_GATES                 # passed | forced: <failed gates>
TAG_BY = K.TAG_VERSION_BY                       # user@host
LEGACY_PREVIOUS_VERSION = "sai.promotion.previous_version"  # versions promoted before the short tags
# written by a rollback
TAG_ROLLBACK_TIME = "sai.rollback.time"
TAG_ROLLBACK_FROM = "sai.rollback.from_version"
TAG_ROLLBACK_BY = "sai.rollback.by"
TAG_ROLLED_BACK_TIME = "sai.rollback.rolled_back_at"  # on the version that lost the alias

RACE_PAUSE_ENV = "SAI_MLFLOW_PROMOTE_PAUSE_S"  # tests only: widen the window inside the lock


@dataclass
class Outcome:
    """What `promote` / `rollback` did (or, dry-run, would do)."""

    # promoted | forced | blocked | would_promote | would_force | already_holder | rolled_back | would_roll_back
    action: str
    evaluation: Evaluation | None = None
    version: str | None = None
    previous_version: str | None = None
    time: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.action == "blocked" or (self.action == "would_promote" and not self.evaluation.passed) else 0


def _race_pause() -> None:
    try:
        pause = float(os.environ.get(RACE_PAUSE_ENV, "0") or 0)
    except ValueError:
        pause = 0.0
    if pause > 0:
        time.sleep(pause)


# --- promote / rollback ----------------------------------------------------------------------------

def _ensure_registered_model(client, model_name: str) -> None:
    try:
        client.create_registered_model(model_name, description="registered by sai-mlflow promote")
    except Exception as e:
        if not (is_store_error(e) and is_already_exists(e)):
            raise


def gate_table_md(gates: list[Gate]) -> str:
    """The gate table as markdown (the model version's description renders it)."""
    def esc(x: str) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    rows = [f"| {esc(g.name)} | {esc(g.value)} | {esc(g.threshold)} | {'pass' if g.passed else '**FAIL**'} "
            f"| {esc(g.note)} |" for g in gates]
    return "\n".join(["| gate | value | threshold | result | note |", "|---|---|---|---|---|", *rows])


def version_description(ev: Evaluation, policy, *, forced: bool, when: str, who: str,
                        allow_dataset_change: bool, run_link: str | None = None) -> str:
    """Markdown: who promoted which run when, against which holder, the gate table and the policy."""
    run = f"[{ev.run_id}]({run_link})" if run_link else f"`{ev.run_id}`"
    h = ev.holder
    holder = ("none (first holder)" if h is None else
              f"v{h.version} (run `{h.run_id or 'unknown'}`, best mAP50 {fmt(h.best_map50)})")
    head = "**Forced** past failing gates" if forced else "Every gate passed"
    return "\n".join([
        f"{head}: promoted to **@{ev.alias}** from run {run} by {who} at {when}.", "",
        f"Best mAP50: {fmt(ev.best_map50)}; previous holder: {holder}.", "",
        gate_table_md(ev.gates), "",
        f"Policy: min_improvement {policy.min_improvement:g}, max_memory_fraction {policy.max_memory_fraction:g}; "
        f"dataset change allowed: {'yes' if allow_dataset_change else 'no'}.",
    ])


def promote(client, run_id: str, model_name: str, alias: str, policy, *, force: bool = False,
            dry_run: bool = False, allow_dataset_change: bool = False) -> Outcome:
    """Judge `run_id`; when every gate passes (or `force`), register a version and move `alias` to it."""
    check_names(model_name, alias)
    if dry_run:
        ev = evaluate(client, run_id, model_name, alias, policy, allow_dataset_change)
        if ev.holder is not None and ev.holder.run_id == run_id:
            return Outcome("already_holder", ev, version=ev.holder.version)
        return Outcome("would_force" if (force and not ev.passed) else "would_promote", ev,
                       previous_version=ev.holder.version if ev.holder else None)

    run = get_run(client, run_id)  # the cheap bad-input check before taking the lock
    from ..ui_links import RELATIVE, run_url

    run_link = run_url(RELATIVE, run.info.experiment_id, run_id)  # stored in MLflow: relative, any host
    with promotion_lock(client, model_name, alias):
        ev = evaluate(client, run_id, model_name, alias, policy, allow_dataset_change)
        if ev.holder is not None and ev.holder.run_id == run_id:
            return Outcome("already_holder", ev, version=ev.holder.version)
        if not ev.passed and not force:
            return Outcome("blocked", ev, previous_version=ev.holder.version if ev.holder else None)
        _race_pause()
        when, by = now(), who()
        tags = {
            TAG_ALIAS: alias,
            TAG_PREVIOUS_VERSION: ev.holder.version if ev.holder else NONE,
            TAG_GATES: "passed" if ev.passed else "forced: " + ", ".join(ev.failed),
            TAG_BY: by,
        }
        description = version_description(ev, policy, forced=not ev.passed, when=when, who=by,
                                          allow_dataset_change=allow_dataset_change, run_link=run_link)
        _ensure_registered_model(client, model_name)
        from ..model import registry_source

        source, model_id = registry_source(client, ev.model_uri)
        mv = client.create_model_version(model_name, source=source, run_id=run_id, tags=tags,
                                         model_id=model_id, description=description)
        try:
            client.set_registered_model_alias(model_name, alias, mv.version)
        except Exception as e:  # no version without its alias (e.g. HTTP 403 on the alias)
            _undo_version(client, model_name, str(mv.version), alias, e)
            raise
        if model_id:
            from ..backend.mlflow_registry import link_logged_model

            link_logged_model(client, model_id, model_name, str(mv.version))
        if ev.holder is not None:
            mark_alias_moved(client, model_name, alias, lost=ev.holder.version, gained=str(mv.version), when=when,
                             how="promoted")
        return Outcome("forced" if not ev.passed else "promoted", ev, version=str(mv.version),
                       previous_version=ev.holder.version if ev.holder else None, time=when)


ALIAS_NOTE = "**Alias:**"


def with_alias_note(description: str | None, line: str) -> str:
    """Pure: the alias note as the first paragraph (a previous note replaced), the promotion record below."""
    return with_lead_note(description, ALIAS_NOTE, line)


def mark_alias_moved(client, model_name: str, alias: str, *, lost: str, gained: str, when: str, how: str) -> None:
    """Only the holder says it holds the alias: the version that lost it drops `sai.alias` and its description
    says so; the one that gained it (a rollback target) gets the tag back and says so."""
    lost_mv = client.get_model_version(model_name, lost)
    if (lost_mv.tags or {}).get(TAG_ALIAS) == alias:
        client.delete_model_version_tag(model_name, lost, TAG_ALIAS)
    client.update_model_version(model_name, lost, description=with_alias_note(
        lost_mv.description, f"no longer @{alias} since {when}: {how} to v{gained}."))
    if how == "rolled back":
        gained_mv = client.get_model_version(model_name, gained)
        client.set_model_version_tag(model_name, gained, TAG_ALIAS, alias)
        client.update_model_version(model_name, gained, description=with_alias_note(
            gained_mv.description, f"@{alias} again since {when} (rolled back from v{lost})."))


def _undo_version(client, model_name: str, version: str, alias: str, error: Exception) -> None:
    """Remove the version a failed promotion created; say so plainly when even that is refused."""
    try:
        client.delete_model_version(model_name, version)
    except Exception:
        raise PromotionError(f"{model_name} v{version} was registered but @{alias} could not be moved to it "
                             f"({getattr(error, 'message', error)}) and the version could not be removed: "
                             f"delete v{version} by hand") from None


def rollback(client, model_name: str, alias: str, *, dry_run: bool = False) -> Outcome:
    """Move `alias` back to the version that held it before the current holder's promotion."""
    check_names(model_name, alias)

    def target():
        mv = current_holder(client, model_name, alias)
        if mv is None:
            raise PromotionError(f"nothing holds {model_name}@{alias} (unknown model or alias): nothing to roll back")
        prev = (mv.tags or {}).get(TAG_PREVIOUS_VERSION) or (mv.tags or {}).get(LEGACY_PREVIOUS_VERSION)
        if not prev or prev == NONE:
            raise PromotionError(f"{model_name}@{alias} is v{mv.version}, which has no previous holder recorded "
                                 f"({TAG_PREVIOUS_VERSION}): nothing to roll back to")
        try:
            client.get_model_version(model_name, prev)
        except Exception as e:
            if not is_store_error(e):
                raise
            raise PromotionError(f"the previous holder v{prev} of {model_name}@{alias} no longer exists") from None
        return str(mv.version), prev

    if dry_run:
        current, prev = target()
        return Outcome("would_roll_back", version=prev, previous_version=current)
    with promotion_lock(client, model_name, alias):
        current, prev = target()
        when = now()
        client.set_registered_model_alias(model_name, alias, prev)
        try:
            for k, v in {TAG_ROLLBACK_TIME: when, TAG_ROLLBACK_FROM: current, TAG_ROLLBACK_BY: who()}.items():
                client.set_model_version_tag(model_name, prev, k, v)
            client.set_model_version_tag(model_name, current, TAG_ROLLED_BACK_TIME, when)
            mark_alias_moved(client, model_name, alias, lost=current, gained=prev, when=when, how="rolled back")
        except Exception:  # no alias without its audit tags: put it back
            try:
                client.set_registered_model_alias(model_name, alias, current)
            except Exception:
                pass
            raise
        return Outcome("rolled_back", version=prev, previous_version=current, time=when)
