"""The `promote` flow: a run's model to `model@alias` through the gates (`promotion/`), or the alias rolled back.

Bad input and a store's refusal raise a UserError (exit 2, nothing written); the outcome's own exit code says
whether a gate failed (1).
"""

from __future__ import annotations

from ..errors import UserError


def promote(run_id: str | None, model_name: str, alias: str, *, rollback: bool, dry_run: bool, force: bool,
            allow_dataset_change: bool, tracking_uri: str | None, policy_file: str | None):
    """(outcome, the store's URI): promoted, blocked, forced, already the holder, rolled back, or dry-run's would."""
    from .. import promotion
    from ..backend import is_store_error
    from ..compare.policy import PolicyError, load_policy
    from ..tracking.store import config_error, make_client, resolve_tracking_uri
    from .store import refusals

    if rollback and run_id:
        raise UserError("--rollback moves the alias back to its previous holder; it takes no RUN_ID")
    if rollback and (force or allow_dataset_change):
        raise UserError("--force and --allow-dataset-change do not apply to --rollback")
    if not rollback and not run_id:
        raise UserError("give the RUN_ID to promote (or --rollback)")
    try:
        policy = load_policy(policy_file)
    except PolicyError as e:
        raise UserError(str(e)) from None
    uri = resolve_tracking_uri(tracking_uri)
    with refusals(uri):
        client = make_client(uri, create=False)  # promotion needs a run: a missing store is not created
    try:
        if rollback:
            return promotion.rollback(client, model_name, alias, dry_run=dry_run), uri
        return promotion.promote(client, run_id, model_name, alias, policy, force=force, dry_run=dry_run,
                                 allow_dataset_change=allow_dataset_change), uri
    except promotion.PromotionError:
        raise
    except Exception as e:
        if not is_store_error(e):
            raise
        refused = config_error(e, uri, f"registering a version of '{model_name}' or moving @{alias}")
        if refused is not None:
            raise UserError(f"{refused}; nothing was written") from None
        raise UserError(f"MLflow error: {getattr(e, 'message', e)}") from None  # redacted by the boundary
