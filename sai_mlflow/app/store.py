"""Which store a command uses, and the one reading of a refusal met mid-command (shared by the flows)."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def refusals(uri: str, what: str = ""):
    """An MLflow 401/403 met mid-command, raised as the StoreConfigError that names the store and what was refused."""
    from ..tracking.store import config_error

    try:
        yield
    except Exception as e:
        refused = config_error(e, uri, what)
        if refused is None:
            raise
        raise refused from None


def client_for(tracking_uri: str | None, create: bool = True):
    """MLflow's client for writing (create=False: a missing sqlite store is refused, not made)."""
    from ..tracking.store import make_client, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    with refusals(uri):
        return make_client(uri, create=create)


def reader_for(tracking_uri: str | None):
    """(uri, the store's fastest reader: SQL, REST, else MLflow's client): reading imports no `mlflow` where it can."""
    from ..backend.read_choice import reader_for as choose
    from ..tracking.store import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    with refusals(uri):
        return uri, choose(uri)
