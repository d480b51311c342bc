"""MLflow's database schema read directly: sqlite through the standard library's `sqlite3`, PostgreSQL
through SQLAlchemy Core, the same SQL text for both and no `mlflow` import (which costs ~2.5 s).

Only the tables compare-runs needs: `experiments`, `runs`, `tags`, `latest_metrics`, `metrics`, and
`params` for runs without our `run_kind` tag (Ultralytics' own callback records its arguments there).
Series are sampled by MLflow's rule (`read_api.sample_indices`), `SQL_RUNS` runs a round trip. The
reader checks the columns it uses when it opens; a store whose schema differs is read by MLflow's
client instead (`read_choice.reader_for`), and tests/test_fastread.py compares both readers' verdicts.
MySQL and MSSQL stores are read by MLflow's client (not measured here).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from .read_api import Advance, BadFilter, NotFound, Rows, RunRow, Window, ordered, sample_indices

SQL_RUNS = 25   # runs per round trip (one UNION ALL; SQLite allows 500 terms)
IN_CHUNK = 500  # ids per IN (...) list
ACTIVE = "active"
# the columns read, checked once when the reader opens (a renamed column falls back to MLflow's client)
SCHEMA = {"experiments": "experiment_id, name, lifecycle_stage",
          "runs": "run_uuid, name, status, experiment_id, start_time, lifecycle_stage, artifact_uri",
          "tags": "run_uuid, key, value", "params": "run_uuid, key, value",
          "latest_metrics": "run_uuid, key, value, step, is_nan",
          "metrics": "run_uuid, key, value, step, timestamp, is_nan"}
_said: set[str] = set()


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        print(f"Note: {message}", file=sys.stderr)


class _Sqlite:
    """A read-only sqlite3 connection (never creates or migrates the file)."""

    def __init__(self, path: Path) -> None:
        import sqlite3
        from urllib.parse import quote

        self.errors = (sqlite3.Error,)
        self.con = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30, check_same_thread=False)

    def query(self, sql: str, params: dict | None = None) -> list[tuple]:
        return self.con.execute(sql, params or {}).fetchall()


class _Alchemy:
    """A SQLAlchemy Core connection for PostgreSQL (same SQL text, same `:name` parameters)."""

    def __init__(self, uri: str) -> None:
        import sqlalchemy as sa

        self.errors = (sa.exc.SQLAlchemyError,)
        self._text = sa.text
        self.engine = sa.create_engine(uri, poolclass=sa.pool.NullPool)
        self.con = self.engine.connect()

    def query(self, sql: str, params: dict | None = None) -> list[tuple]:
        return [tuple(r) for r in self.con.execute(self._text(sql), params or {})]


def sql_reader(uri: str) -> SqlReader | None:
    """A SqlReader for a sqlite file or PostgreSQL database holding MLflow's schema; None for anything
    else (a missing file, options in the URI, another database, another schema): MLflow's client reads those."""
    from ..tracking.address import scheme_of
    from .mlflow_store import check_store

    scheme = scheme_of(uri)
    if scheme == "sqlite":
        path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        if not path or "?" in path or path.startswith(":memory:") or not Path(path).is_file():
            return None
        make = lambda: _Sqlite(Path(path))  # noqa: E731
    elif scheme == "postgresql":
        check_store(uri)  # a refused login or an outage: one line naming the fix, in seconds
        make = lambda: _Alchemy(uri)  # noqa: E731
    else:
        return None
    try:
        db = make()
    except Exception:
        return None
    missing = _schema_gap(db)
    if missing:
        _say_once(f"reading through MLflow's client: this store's schema differs from the one read directly "
                  f"({missing})")
        return None
    return SqlReader(db, uri)


def _schema_gap(db) -> str | None:
    for table, cols in SCHEMA.items():
        try:
            db.query(f"SELECT {cols} FROM {table} WHERE 1 = 0")
        except db.errors as e:
            return f"{table}: {str(e).splitlines()[0][:120]}"
    return None


def _in(name: str, values: Sequence) -> tuple[str, dict]:
    """`:name0, :name1, ...` and their parameters (an IN list both drivers bind)."""
    return ", ".join(f":{name}{i}" for i in range(len(values))), {f"{name}{i}": v for i, v in enumerate(values)}


def _chunks(seq: Sequence, n: int):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


# filters read here: `tags.K = 'V'`, `params.K != 'V'`, `attributes.status = 'FINISHED'`, joined by AND;
# any other filter is MLflow's to parse (read_mlflow)
_CLAUSE = (r"\s*(?P<kind>tags?|params?|attributes?|attr|run)\.(?P<key>`[^`]+`|\"[^\"]+\"|[\w.\-/:]+)"
           r"\s*(?P<op>=|!=)\s*'(?P<value>[^']*)'\s*")
_PLAIN = re.sub(r"\(\?P<\w+>", "(?:", _CLAUSE)
_FILTER = re.compile(rf"{_PLAIN}(?:(?i:and){_PLAIN})*")
_ATTRS = {"status": "status", "run_name": "name", "run_id": "run_uuid"}


def _filter_sql(filter_string: str) -> tuple[str, dict] | None:
    """SQL for a simple filter, None for one this reader leaves to MLflow."""
    if not _FILTER.fullmatch(filter_string):
        return None
    sql, params = [], {}
    for i, m in enumerate(re.finditer(_CLAUSE, filter_string)):
        kind, key = m["kind"].lower(), m["key"].strip("`\"")
        op = "=" if m["op"] == "=" else "<>"
        params[f"fv{i}"] = m["value"]
        if kind.startswith(("tag", "param")):
            table = "tags" if kind.startswith("tag") else "params"
            params[f"fk{i}"] = key
            sql.append(f"run_uuid IN (SELECT run_uuid FROM {table} WHERE key = :fk{i} AND value {op} :fv{i})")
        elif key in _ATTRS:
            sql.append(f"{_ATTRS[key]} {op} :fv{i}")
        else:
            return None
    return " AND ".join(sql), params


class SqlReader:
    def __init__(self, db, uri: str) -> None:
        from ..redact import without_credentials

        self.db, self._uri, self.uri = db, uri, without_credentials(uri)

    def _fallback(self):
        from .read_mlflow import MlflowReader

        return MlflowReader(None, self._uri)

    def experiment_id(self, name: str) -> str | None:
        got = self.db.query("SELECT experiment_id FROM experiments WHERE name = :name AND lifecycle_stage = :active",
                            {"name": name, "active": ACTIVE})
        return str(got[0][0]) if got else None

    def experiment_names(self) -> list[str]:
        return [r[0] for r in self.db.query("SELECT name FROM experiments WHERE lifecycle_stage = :active",
                                            {"active": ACTIVE})]

    def runs(self, run_ids: Sequence[str]) -> list[RunRow]:
        found: dict[str, tuple] = {}
        for chunk in _chunks(list(run_ids), IN_CHUNK):
            marks, params = _in("r", chunk)
            for row in self.db.query(f"SELECT run_uuid, name, status, experiment_id, start_time FROM runs "
                                     f"WHERE run_uuid IN ({marks})", params):
                found[row[0]] = row
        for rid in run_ids:
            if rid not in found:
                raise NotFound(rid)
        return self._rows([found[rid] for rid in run_ids])

    def search(self, experiment_id: str, filter_string: str = "") -> list[RunRow]:
        where, params = "", {}
        if filter_string and filter_string.strip():
            parsed = _filter_sql(filter_string.strip())
            if parsed is None:
                return self._fallback().search(experiment_id, filter_string)
            where, params = " AND " + parsed[0], parsed[1]
        try:
            exp = int(experiment_id)
        except ValueError:
            raise BadFilter(f"experiment id {experiment_id!r} is not a number") from None
        runs = self.db.query(
            "SELECT run_uuid, name, status, experiment_id, start_time FROM runs "
            f"WHERE experiment_id = :exp AND lifecycle_stage = :active{where} "
            "ORDER BY CASE WHEN start_time IS NULL THEN 1 ELSE 0 END, start_time, run_uuid",
            {"exp": exp, "active": ACTIVE, **params})
        return self._rows(runs)

    def _rows(self, runs: list[tuple]) -> list[RunRow]:
        """RunRows with tags and latest metrics; params only for runs without our run_kind tag."""
        from .. import keys as K

        rows = {r[0]: RunRow(run_id=r[0], run_name=r[1], status=r[2], experiment_id=str(r[3]), start_time=r[4])
                for r in runs}
        ids = list(rows)
        for chunk in _chunks(ids, IN_CHUNK):
            marks, params = _in("r", chunk)
            for rid, key, value in self.db.query(f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({marks})",
                                                 params):
                rows[rid].tags[key] = value
            for rid, key, value, step, nan in self.db.query(
                    f"SELECT run_uuid, key, value, step, is_nan FROM latest_metrics WHERE run_uuid IN ({marks})",
                    params):
                rows[rid].metrics[key] = math.nan if nan else float(value)
                rows[rid].steps[key] = int(step)
        foreign = [rid for rid in ids if not rows[rid].tags.get(K.TAG_RUN_KIND)]
        for chunk in _chunks(foreign, IN_CHUNK):
            marks, params = _in("r", chunk)
            for rid, key, value in self.db.query(
                    f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({marks})", params):
                rows[rid].params[key] = value
        return [rows[r[0]] for r in runs]

    def series(self, key: str, windows: dict[str, Window], max_points: int, advance: Advance = None) -> dict[str, Rows]:
        """`SQL_RUNS` runs a round trip: a count per run on MLflow's (run_uuid, key, step) index, then only
        the rows the sampling rule keeps. When a window holds one row per step (every series this project
        logs) those rows are found by arithmetic on the step; otherwise the window's rows are read in
        MLflow's order (step, timestamp, value, is_nan) and sampled here by the same rule."""
        out: dict[str, Rows] = {}
        items = list(windows.items())
        for chunk in _chunks(items, SQL_RUNS):
            params: dict = {"key": key}
            where = {}
            for i, (rid, win) in enumerate(chunk):
                params[f"r{i}"] = rid
                w = f"run_uuid = :r{i} AND key = :key"
                if win is not None:
                    params[f"lo{i}"], params[f"hi{i}"] = int(win[0]), int(win[1])
                    w += f" AND step >= :lo{i} AND step <= :hi{i}"
                where[rid] = (i, w)
            counts = " UNION ALL ".join(
                f"SELECT run_uuid, COUNT(*), COUNT(DISTINCT step), MIN(step), MAX(step) FROM metrics WHERE {w} "
                f"GROUP BY run_uuid" for i, w in where.values())
            stats = {r[0]: r[1:] for r in self.db.query(counts, params)}
            selects, keep, full = [], {}, []
            cols = "SELECT run_uuid, step, timestamp, value, is_nan FROM metrics WHERE "
            for rid, _ in chunk:
                if rid not in stats:
                    continue
                n, distinct, lo, hi = stats[rid]
                i, w = where[rid]
                if n <= max_points:
                    selects.append(cols + w)
                elif n == distinct == hi - lo + 1:
                    q, r = divmod(n, max_points)
                    params.update({f"a{i}": r * (q + 1), f"q{i}": q, f"qq{i}": q + 1, f"l{i}": lo, f"h{i}": hi})
                    k = f"(step - :l{i})"
                    selects.append(cols + w + f" AND (({k} < :a{i} AND {k} % :qq{i} = 0) OR "
                                              f"({k} >= :a{i} AND ({k} - :a{i}) % :q{i} = 0) OR step = :h{i})")
                    keep[rid] = {lo + j for j in sample_indices(n, max_points)}
                else:
                    full.append(rid)
            got: dict[str, list] = {}
            if selects:
                for rid, step, ts, value, nan in self.db.query(" UNION ALL ".join(selects), params):
                    if rid not in keep or step in keep[rid]:
                        got.setdefault(rid, []).append((step, ts, math.nan if nan else value))
            for rid in full:
                i, w = where[rid]
                rows = self.db.query(cols + w + " ORDER BY step, timestamp, value, is_nan", params)
                got[rid] = [(rows[j][1], rows[j][2], math.nan if rows[j][4] else rows[j][3])
                            for j in sample_indices(len(rows), max_points)]
            for rid, _ in chunk:
                out[rid] = ordered(got.get(rid, []))
                if advance:
                    advance()
        return out

    def artifact_text(self, run_id: str, path: str) -> str | None:
        """Read from the artifact folder when it is on this machine; other locations through MLflow."""
        from urllib.parse import unquote, urlsplit

        got = self.db.query("SELECT artifact_uri FROM runs WHERE run_uuid = :r", {"r": run_id})
        root = got[0][0] if got else None
        if not root:
            return None
        parts = urlsplit(root)
        if parts.scheme in ("", "file") and not parts.netloc:
            try:
                return (Path(unquote(parts.path)) / path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                return None
        return self._fallback().artifact_text(run_id, path)
