"""Gated promotion of a run's model into the MLflow model registry, with aliases (never stages).

`evaluate` judges a run against the gates (no writes); `promote` registers a version from the run's
model, moves the alias and writes audit tags on the version; `rollback` moves the alias back to
the version that held it before. The CLI (`sai-mlflow promote`) only parses, calls and renders.

Gates (docs/registry.md):
- `run_finished`: the run's status is FINISHED;
- `comparator`: compare-runs' evaluation of the run (decision.decide) gives it no reject reason;
- `map_improvement`: its `summary/best_mAP50` beats the alias holder's by at least the policy's
  `min_improvement` (passes when nothing holds the alias);
- `same_dataset`: same `dataset_digest` tag as the holder's run (waived by `allow_dataset_change`);
- `batch_unchanged`: tag `batch_size_effective` == `batch_size`;
- `memory_fraction`: `summary/peak_fraction` <= the policy's `max_memory_fraction` (missing = fail).

Concurrency: MLflow has no compare-and-set for aliases, so read-holder -> judge -> register -> set
alias runs under a lock that every store enforces atomically: the unique name of a registered
model. The lock is a registered model named `<model>.promotion-lock.<alias>`, created on entry
and deleted on exit (a lock older than `LOCK_TTL_S` is treated as left by a dead process and
broken). Two racing promotions are thus serialised: the second one is judged against, and records
as its previous holder, the version the first one just promoted.
"""

from __future__ import annotations

import getpass
import os
import random
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import keys as K
from .backend import is_store_error
from .compare.text import with_lead_note
from .telemetry.stats import finite
from .tracking.mlflow_errors import is_already_exists, is_not_found

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

NONE = "none"
LOCK_INFIX = ".promotion-lock."
LOCK_TTL_S = 120.0
LOCK_WAIT_S = 60.0
RACE_PAUSE_ENV = "SAI_MLFLOW_PROMOTE_PAUSE_S"  # tests only: widen the window inside the lock

GATES = ("run_finished", "comparator", "map_improvement", "same_dataset", "batch_unchanged", "memory_fraction")


class PromotionError(ValueError):
    """Bad input (unknown run, run without a model, unknown alias, nothing to roll back to): exit 2."""


class LockTimeout(PromotionError):
    """Another promotion of the same alias held the lock for longer than the wait."""


@dataclass
class Gate:
    name: str
    value: str
    threshold: str
    passed: bool
    note: str = ""


@dataclass
class Holder:
    version: str
    run_id: str | None
    best_map50: float | None = None
    dataset_digest: str | None = None


@dataclass
class Evaluation:
    run_id: str
    model_name: str
    alias: str
    model_uri: str
    holder: Holder | None
    gates: list[Gate] = field(default_factory=list)
    best_map50: float | None = None  # the candidate's summary/best_mAP50

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failed(self) -> list[str]:
        return [g.name for g in self.gates if not g.passed]


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


# --- small helpers ---------------------------------------------------------------------------------

def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _fmt(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def get_run(client, run_id: str):
    try:
        return client.get_run(run_id)
    except Exception as e:
        if not is_store_error(e):
            raise
        if is_not_found(e):
            raise PromotionError(f"unknown run id '{run_id}' in {client.tracking_uri}") from None
        raise PromotionError(f"cannot read run '{run_id}': {getattr(e, 'message', e)}") from None


def current_holder(client, model_name: str, alias: str):
    """The ModelVersion holding `alias`, or None (no such model, or alias unset)."""
    try:
        rm = client.get_registered_model(model_name)
    except Exception as e:
        if is_store_error(e) and is_not_found(e):
            return None
        raise
    version = (rm.aliases or {}).get(alias)
    return client.get_model_version(model_name, str(version)) if version is not None else None


def _holder_info(client, mv) -> Holder | None:
    if mv is None:
        return None
    h = Holder(version=str(mv.version), run_id=mv.run_id or None)
    if h.run_id:
        try:
            run = client.get_run(h.run_id)
            h.best_map50 = finite(run.data.metrics.get(K.SUMMARY_BEST_MAP50))
            h.dataset_digest = run.data.tags.get(K.TAG_DATASET_DIGEST)
        except Exception:
            pass  # the holder's run was deleted: its figures stay unknown (and the gates say so)
    return h


# --- the gates --------------------------------------------------------------------------------------

def judge(client, run, holder: Holder | None, policy, allow_dataset_change: bool = False) -> list[Gate]:
    """The gate table for `run` against `holder` (None: nothing holds the alias). Reads only."""
    from .compare.decision import REJECT, decide
    from .compare.loader import records_of

    tags, metrics = run.data.tags, run.data.metrics
    gates: list[Gate] = []

    status = run.info.status
    gates.append(Gate("run_finished", status, "FINISHED", status == "FINISHED"))

    # the comparator's own evaluation of this run (one-run group: every reason but too_slow applies)
    record = records_of(client, [run], policy)[0]
    verdict = decide([record], policy).verdicts[0]
    rejects = [r for r in verdict.reasons if r.severity == REJECT]
    gates.append(Gate("comparator", ", ".join(r.code for r in rejects) or NONE, "no reject reason", not rejects,
                      "; ".join(r.message for r in rejects)))

    best = finite(metrics.get(K.SUMMARY_BEST_MAP50))
    gain = policy.min_improvement
    if holder is None:
        gates.append(Gate("map_improvement", _fmt(best), "no holder", True, "nothing holds the alias"))
    elif best is None:
        gates.append(Gate("map_improvement", "—", f"holder v{holder.version} + {gain:g}", False,
                          f"run has no {K.SUMMARY_BEST_MAP50}"))
    elif holder.best_map50 is None:
        gates.append(Gate("map_improvement", _fmt(best), f"holder v{holder.version} + {gain:g}", False,
                          f"the holder's {K.SUMMARY_BEST_MAP50} is unknown (run {holder.run_id or 'not recorded'})"))
    else:
        need = holder.best_map50 + gain
        gates.append(Gate("map_improvement", _fmt(best),
                          f">= {_fmt(need)} (v{holder.version} {_fmt(holder.best_map50)} + {gain:g})",
                          best - holder.best_map50 >= gain - 1e-12,
                          f"gain {best - holder.best_map50:+.4f}"))

    digest = tags.get(K.TAG_DATASET_DIGEST)
    if holder is None:
        gates.append(Gate("same_dataset", digest or "—", "no holder", True))
    else:
        same = digest is not None and digest == holder.dataset_digest
        note = "waived: --allow-dataset-change" if (allow_dataset_change and not same) else ""
        gates.append(Gate("same_dataset", digest or "—", holder.dataset_digest or "unknown",
                          same or allow_dataset_change, note))

    bs, eff = tags.get(K.TAG_BATCH_SIZE), tags.get(K.TAG_BATCH_SIZE_EFFECTIVE)
    gates.append(Gate("batch_unchanged", eff or "—", f"== batch_size {bs or '—'}",
                      bs is not None and eff is not None and str(eff).strip() == str(bs).strip(),
                      "" if bs and eff else "batch_size or batch_size_effective not recorded"))

    frac = finite(metrics.get(K.SUMMARY_PEAK_FRACTION))
    gates.append(Gate("memory_fraction", _fmt(frac, 3), f"<= {policy.max_memory_fraction:g}",
                      frac is not None and frac <= policy.max_memory_fraction,
                      "" if frac is not None else f"{K.SUMMARY_PEAK_FRACTION} not recorded"))
    return gates


def evaluate(client, run_id: str, model_name: str, alias: str, policy,
             allow_dataset_change: bool = False) -> Evaluation:
    """Gate table of `run_id` against the current holder of `model_name@alias`. Reads only."""
    from .model import ModelNotFound, find_run_model

    _check_names(model_name, alias)
    run = get_run(client, run_id)
    try:
        model_uri = find_run_model(client, run)
    except ModelNotFound as e:
        raise PromotionError(str(e)) from None
    holder = _holder_info(client, current_holder(client, model_name, alias))
    return Evaluation(run_id, model_name, alias, model_uri, holder,
                      judge(client, run, holder, policy, allow_dataset_change),
                      finite(run.data.metrics.get(K.SUMMARY_BEST_MAP50)))


MAX_NAME_CHARS = 256  # registered model names (and so the lock's `<model>.promotion-lock.<alias>`) in MLflow's tables


def _check_names(model_name: str, alias: str) -> None:
    """Refuse a bad model name or alias before any write, with MLflow's own rules, naming the user's model."""
    import re

    from .backend.mlflow_registry import name_problem

    if not model_name or not model_name.strip():
        raise PromotionError("--model needs a registered model name")
    if LOCK_INFIX in model_name:
        raise PromotionError(f"model names containing '{LOCK_INFIX}' are reserved for promotion locks")
    if not alias or re.fullmatch(r"[vV]\d+", alias) or alias.lower() == "latest":
        raise PromotionError(f"alias '{alias}' is reserved by MLflow (v<number>, latest); pick another")
    problem = name_problem(model_name, alias)
    if problem and problem[0] == "model":
        raise PromotionError(f"--model '{model_name}': {problem[1]}")
    if problem:
        raise PromotionError(f"--alias '{alias[:80]}{'…' if len(alias) > 80 else ''}': {problem[1]}")
    if len(lock_name(model_name, alias)) > MAX_NAME_CHARS:
        raise PromotionError(f"--model '{model_name[:80]}' with --alias '{alias[:80]}' is too long: together they "
                             f"must stay under {MAX_NAME_CHARS - len(LOCK_INFIX)} characters")


# --- the lock -----------------------------------------------------------------------------------------

def lock_name(model_name: str, alias: str) -> str:
    return f"{model_name}{LOCK_INFIX}{alias}"


@contextmanager
def promotion_lock(client, model_name: str, alias: str, wait_s: float = LOCK_WAIT_S,
                   ttl_s: float = LOCK_TTL_S) -> Iterator[None]:
    """Hold the `model@alias` promotion lock: an atomically created registered model (see module doc)."""
    name = lock_name(model_name, alias)
    deadline = time.monotonic() + wait_s
    owner = f"{_who()} pid {os.getpid()} at {_now()}"
    while True:
        try:
            client.create_registered_model(name, tags={"sai.lock.owner": owner},
                                           description="sai-mlflow promotion lock; deleted when the promotion ends")
            break
        except Exception as e:
            if not (is_store_error(e) and is_already_exists(e)):
                raise
        try:  # held: break it if its owner died long ago
            rm = client.get_registered_model(name)
            age_s = time.time() - (rm.creation_timestamp or 0) / 1000.0
            if age_s > ttl_s:
                client.delete_registered_model(name)
                continue
        except Exception as e:
            if not is_store_error(e):
                raise
            continue  # released between our attempts
        if time.monotonic() > deadline:
            raise LockTimeout(f"another promotion of {model_name}@{alias} holds the lock "
                              f"('{name}', {(rm.tags or {}).get('sai.lock.owner', 'owner unknown')}); "
                              f"retry later, or delete that registered model if its process is gone")
        time.sleep(0.1 + random.random() * 0.2)
    try:
        yield
    finally:
        try:
            client.delete_registered_model(name)
        except Exception as e:
            if not is_store_error(e):
                raise


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
              f"v{h.version} (run `{h.run_id or 'unknown'}`, best mAP50 {_fmt(h.best_map50)})")
    head = "**Forced** past failing gates" if forced else "Every gate passed"
    return "\n".join([
        f"{head}: promoted to **@{ev.alias}** from run {run} by {who} at {when}.", "",
        f"Best mAP50: {_fmt(ev.best_map50)}; previous holder: {holder}.", "",
        gate_table_md(ev.gates), "",
        f"Policy: min_improvement {policy.min_improvement:g}, max_memory_fraction {policy.max_memory_fraction:g}; "
        f"dataset change allowed: {'yes' if allow_dataset_change else 'no'}.",
    ])


def promote(client, run_id: str, model_name: str, alias: str, policy, *, force: bool = False,
            dry_run: bool = False, allow_dataset_change: bool = False) -> Outcome:
    """Judge `run_id`; when every gate passes (or `force`), register a version and move `alias` to it."""
    _check_names(model_name, alias)
    if dry_run:
        ev = evaluate(client, run_id, model_name, alias, policy, allow_dataset_change)
        if ev.holder is not None and ev.holder.run_id == run_id:
            return Outcome("already_holder", ev, version=ev.holder.version)
        return Outcome("would_force" if (force and not ev.passed) else "would_promote", ev,
                       previous_version=ev.holder.version if ev.holder else None)

    run = get_run(client, run_id)  # the cheap bad-input check before taking the lock
    from .ui_links import RELATIVE, run_url

    run_link = run_url(RELATIVE, run.info.experiment_id, run_id)  # stored in MLflow: relative, any host
    with promotion_lock(client, model_name, alias):
        ev = evaluate(client, run_id, model_name, alias, policy, allow_dataset_change)
        if ev.holder is not None and ev.holder.run_id == run_id:
            return Outcome("already_holder", ev, version=ev.holder.version)
        if not ev.passed and not force:
            return Outcome("blocked", ev, previous_version=ev.holder.version if ev.holder else None)
        _race_pause()
        now, who = _now(), _who()
        tags = {
            TAG_ALIAS: alias,
            TAG_PREVIOUS_VERSION: ev.holder.version if ev.holder else NONE,
            TAG_GATES: "passed" if ev.passed else "forced: " + ", ".join(ev.failed),
            TAG_BY: who,
        }
        description = version_description(ev, policy, forced=not ev.passed, when=now, who=who,
                                          allow_dataset_change=allow_dataset_change, run_link=run_link)
        _ensure_registered_model(client, model_name)
        from .model import registry_source

        source, model_id = registry_source(client, ev.model_uri)
        mv = client.create_model_version(model_name, source=source, run_id=run_id, tags=tags,
                                         model_id=model_id, description=description)
        try:
            client.set_registered_model_alias(model_name, alias, mv.version)
        except Exception as e:  # no version without its alias (e.g. HTTP 403 on the alias)
            _undo_version(client, model_name, str(mv.version), alias, e)
            raise
        if model_id:
            from .backend.mlflow_registry import link_logged_model

            link_logged_model(client, model_id, model_name, str(mv.version))
        if ev.holder is not None:
            mark_alias_moved(client, model_name, alias, lost=ev.holder.version, gained=str(mv.version), when=now,
                             how="promoted")
        return Outcome("forced" if not ev.passed else "promoted", ev, version=str(mv.version),
                       previous_version=ev.holder.version if ev.holder else None, time=now)


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
    _check_names(model_name, alias)

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
        now = _now()
        client.set_registered_model_alias(model_name, alias, prev)
        try:
            for k, v in {TAG_ROLLBACK_TIME: now, TAG_ROLLBACK_FROM: current, TAG_ROLLBACK_BY: _who()}.items():
                client.set_model_version_tag(model_name, prev, k, v)
            client.set_model_version_tag(model_name, current, TAG_ROLLED_BACK_TIME, now)
            mark_alias_moved(client, model_name, alias, lost=current, gained=prev, when=now, how="rolled back")
        except Exception:  # no alias without its audit tags: put it back
            try:
                client.set_registered_model_alias(model_name, alias, current)
            except Exception:
                pass
            raise
        return Outcome("rolled_back", version=prev, previous_version=current, time=now)
