"""`sai-mlflow sync`: upload whatever is still only in the local spool, for every run or one, idempotently.

Exit codes: 0 everything pending was uploaded (or nothing was pending), 1 some spool could not be
uploaded (store unreachable, credentials refused, run deleted there, ...: it stays pending, fix and run
again), 2 bad usage (unknown --run).
"""

from __future__ import annotations

import click


@click.command("sync", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--run", "run_id", help="Only this run (an MLflow run id, or a local-… id of a run started offline).")
@click.option("--dry-run", is_flag=True,
              help="Show what is pending (and what was set aside, with the reason); upload nothing.")
@click.option("--tracking-uri",
              help="Upload here (else the URI the run was started with, else MLFLOW_TRACKING_URI, else ./mlruns).")
@click.option("--spool-dir", help="Spool root (else $SAI_MLFLOW_SPOOL_DIR, else ./mlruns/spool).")
def sync(run_id, dry_run, tracking_uri, spool_dir):
    """Upload pending spools from their watermark; set FINISHED/FAILED/KILLED as observed."""
    from ..app import sync as flow
    from ..tracking.spool import summarize

    spools, root = flow.pending(run_id, spool_dir)
    if not spools:
        click.echo(f"nothing to sync under {root}")
        return
    failed = 0
    for sp in spools:
        if dry_run:
            p = summarize(sp)
            target = sp.bound_run_id() or "(created at sync: started offline)"
            status = p.status or "none recorded -> KILLED"
            click.echo(f"{sp.run_id}  mlflow run {target}")
            click.echo(f"  pending: {p.metrics} points, {p.params} params, {p.tags} tags, {p.artifacts} artifacts, "
                       f"{p.bytes} bytes; final status: {status}")
            for off, size in p.corrupt:
                click.echo(f"  corrupt record: {size} bytes at byte offset {off}, "
                           "skipped (the records after it are kept)")
            if p.torn_tail_bytes:
                click.echo(f"  torn last record: {p.torn_tail_bytes} bytes, dropped (a crash mid-write)")
            for kind, key, value, reason in p.set_aside[:20]:
                click.echo(f"  set aside: {kind} {key} = {value}: {reason}")
            if len(p.set_aside) > 20:
                click.echo(f"  set aside: … {len(p.set_aside) - 20} more")
            for item in sp.rejected()[:20]:
                click.echo(f"  refused by the store: {item}")
            continue
        r = flow.upload(sp, tracking_uri)
        if r.state == "synced":
            made = " (created: the store had no run for it)" if r.created else ""
            click.echo(f"{sp.run_id}: uploaded {r.uploaded_metrics} points to run {r.run_id}{made}, status {r.status}")
            for path in r.missing:
                click.echo(f"{sp.run_id}: artifact {path} no longer exists; not uploaded", err=True)
            for why in r.kept:
                click.echo(f"{sp.run_id}: {why}; the spool is kept in {sp.dir}: delete it once read", err=True)
        elif r.state == "live":
            click.echo(f"{sp.run_id}: {r.message}")
        else:
            failed += 1
            click.echo(f"{sp.run_id}: not synced, everything stays pending ({r.message}); "
                       "run `sai-mlflow sync` again once fixed", err=True)
    if failed:
        raise SystemExit(1)


COMMANDS = [sync]
