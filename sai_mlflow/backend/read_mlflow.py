"""The fallback reader: MLflow's own client, for any store MLflow can open (plugins, databricks, file
stores, and a SQL or HTTP store a fast reader cannot read). Slow to start (`import mlflow` is ~2.5 s)
and, through a server, it downloads full histories; the same data as the fast readers, by the same rule."""

from __future__ import annotations

from collections.abc import Sequence

from .read_api import Advance, BadFilter, NotFound, ReadError, Rows, RunRow, Window, ordered, sample_indices


def row_of(run) -> RunRow:
    """An MLflow `Run` as a RunRow (attribute reads only: no `mlflow` import)."""
    info, data = run.info, run.data
    latest = getattr(data, "_metric_objs", None) or []
    return RunRow(run_id=info.run_id, run_name=info.run_name, status=info.status,
                  experiment_id=info.experiment_id, start_time=info.start_time,
                  tags=dict(data.tags), params=dict(data.params), metrics=dict(data.metrics),
                  steps={m.key: int(m.step) for m in latest})


class MlflowReader:
    """Reads through an `MlflowClient` (built on first use when none is given)."""

    def __init__(self, client=None, uri: str | None = None) -> None:
        from ..redact import without_credentials

        self._client = client
        self._uri = uri or client.tracking_uri
        self.uri = without_credentials(self._uri)

    @property
    def client(self):
        if self._client is None:
            from .mlflow_store import make_client

            self._client = make_client(self._uri, create=False)  # reading never creates a store
        return self._client

    def experiment_id(self, name: str) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        return None if exp is None or exp.lifecycle_stage == "deleted" else exp.experiment_id

    def experiment_names(self) -> list[str]:
        return [e.name for e in self.client.search_experiments()]

    def runs(self, run_ids: Sequence[str]) -> list[RunRow]:
        from mlflow.exceptions import MlflowException

        from ..tracking.mlflow_errors import is_not_found

        out = []
        for rid in run_ids:
            try:
                out.append(row_of(self.client.get_run(rid)))
            except MlflowException as e:
                if is_not_found(e):
                    raise NotFound(rid) from None
                raise ReadError(f"cannot read run '{rid}': {getattr(e, 'message', e)}") from None
        return out

    def search(self, experiment_id: str, filter_string: str = "") -> list[RunRow]:
        from mlflow.exceptions import MlflowException

        out, token = [], None
        try:
            while True:
                page = self.client.search_runs([experiment_id], filter_string=filter_string or "", max_results=1000,
                                               order_by=["attributes.start_time ASC"], page_token=token)
                out += [row_of(r) for r in page]
                token = page.token
                if not token:
                    return out
        except MlflowException as e:
            raise BadFilter(str(getattr(e, "message", e))) from None

    def series(self, key: str, windows: dict[str, Window], max_points: int, advance: Advance = None) -> dict[str, Rows]:
        """Full histories through the public API, sampled here by MLflow's rule."""
        out: dict[str, Rows] = {}
        for rid, win in windows.items():
            rows = ordered((m.step, m.timestamp, m.value) for m in self.client.get_metric_history(rid, key)
                           if win is None or win[0] <= m.step <= win[1])
            out[rid] = [rows[i] for i in sample_indices(len(rows), max_points)]
            if advance:
                advance()
        return out

    def artifact_text(self, run_id: str, path: str) -> str | None:
        import tempfile
        from pathlib import Path

        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory(prefix="sai_artifact_") as tmp:
            try:
                return Path(self.client.download_artifacts(run_id, path, tmp)).read_text(encoding="utf-8")
            except (MlflowException, OSError, UnicodeDecodeError):
                return None
