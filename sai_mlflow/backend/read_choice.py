"""Which reader serves a tracking URI: the one place that knows all three (read_api.py stays below them)."""

from __future__ import annotations

from .read_api import RunReader


def reader_for(uri: str, client=None) -> RunReader:
    """The fastest reader for `uri`: SQL directly, an HTTP server's REST API, else MLflow's client
    (`client` when the caller already holds one for this URI)."""
    from ..tracking.store import DB_SCHEMES, scheme_of

    scheme = scheme_of(uri)
    if scheme == "sqlite" or scheme in DB_SCHEMES:
        from .read_sql import sql_reader

        reader = sql_reader(uri)
        if reader is not None:
            return reader
    elif scheme in ("http", "https"):
        from .read_rest import rest_reader

        reader = rest_reader(uri)
        if reader is not None:
            return reader
    from .read_mlflow import MlflowReader

    return MlflowReader(client, uri)
