"""The spool's records, typed: one class per kind and one table from the code on disk to the class.

On disk a record is a JSON object whose "t" is its code (format.py frames and checksums it). The codes are the
first spool format's, so spools written before stay readable, and nothing is versioned:

    m      Metrics   p: [[key, value, ts_ms, step], ...]   (<= 1000 per record)
    p      Params    p: {key: value}                       (<= 100)
    g      Tags      p: {key: value}                       (<= 100)
    a      Artifact  path, ap (folder inside the run's artifacts, or null)
    model  Model     path (best.pt), names {id: name}, imgsz
    s      Status    status, end_ms, by ("sync" when sync ended a run whose process died)
    x      SetAside  items: [[kind, key, repr(value), reason], ...]   (kept for the user, never uploaded)

Metrics, params and tags from consecutive records share one request (`Request`); an artifact, the model and the
status go alone, through the run writer (backend/). Unknown codes (a newer writer) are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..batching import MAX_METRICS, MAX_PARAMS, MAX_TAGS


@dataclass
class Request:
    """What one log-batch request carries."""

    metrics: list = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.metrics or self.params or self.tags)


@dataclass
class Metrics:
    CODE: ClassVar[str] = "m"
    points: list

    def fits(self, req: Request) -> bool:
        return len(req.metrics) + len(self.points) <= MAX_METRICS

    def add_to(self, req: Request) -> None:
        req.metrics.extend(self.points)

    def to_dict(self) -> dict:
        return {"t": self.CODE, "p": self.points}

    @classmethod
    def from_dict(cls, d: dict) -> Metrics:
        return cls(d["p"])


@dataclass
class Params:
    CODE: ClassVar[str] = "p"
    items: dict[str, str]

    def fits(self, req: Request) -> bool:  # a param sent twice in one request is refused: the later one waits
        return len(req.params) + len(self.items) <= MAX_PARAMS and not set(self.items) & set(req.params)

    def add_to(self, req: Request) -> None:
        req.params.update(self.items)

    def to_dict(self) -> dict:
        return {"t": self.CODE, "p": self.items}

    @classmethod
    def from_dict(cls, d: dict) -> Params:
        return cls(d["p"])


@dataclass
class Tags:
    CODE: ClassVar[str] = "g"
    items: dict[str, str]

    def fits(self, req: Request) -> bool:
        return len(req.tags) + len(self.items) <= MAX_TAGS

    def add_to(self, req: Request) -> None:
        req.tags.update(self.items)

    def to_dict(self) -> dict:
        return {"t": self.CODE, "p": self.items}

    @classmethod
    def from_dict(cls, d: dict) -> Tags:
        return cls(d["p"])


@dataclass
class Artifact:
    CODE: ClassVar[str] = "a"
    path: str
    artifact_path: str | None = None

    def send(self, writer) -> None:
        writer.log_artifact(self.path, self.artifact_path)

    def to_dict(self) -> dict:
        return {"t": self.CODE, "path": self.path, "ap": self.artifact_path}

    @classmethod
    def from_dict(cls, d: dict) -> Artifact:
        return cls(d["path"], d.get("ap"))


@dataclass
class Model:
    CODE: ClassVar[str] = "model"
    path: str
    names: dict[str, str]
    imgsz: int

    def send(self, writer) -> None:
        writer.log_model(self.path, self.names, self.imgsz)

    def to_dict(self) -> dict:
        return {"t": self.CODE, "path": self.path, "names": self.names, "imgsz": self.imgsz}

    @classmethod
    def from_dict(cls, d: dict) -> Model:
        return cls(d["path"], d["names"], d["imgsz"])


@dataclass
class Status:
    CODE: ClassVar[str] = "s"
    status: str
    end_ms: int | None = None
    by: str | None = None

    def send(self, writer) -> None:
        writer.terminate(self.status, self.end_ms)

    def to_dict(self) -> dict:
        return {"t": self.CODE, "status": self.status, "end_ms": self.end_ms, **({"by": self.by} if self.by else {})}

    @classmethod
    def from_dict(cls, d: dict) -> Status:
        return cls(d["status"], d.get("end_ms"), d.get("by"))


@dataclass
class SetAside:
    CODE: ClassVar[str] = "x"
    items: list

    def to_dict(self) -> dict:
        return {"t": self.CODE, "items": self.items}

    @classmethod
    def from_dict(cls, d: dict) -> SetAside:
        return cls(d["items"])


Batched = Metrics | Params | Tags  # share a request
Single = Artifact | Model | Status  # go alone
Record = Batched | Single | SetAside

KINDS: dict[str, type] = {k.CODE: k for k in (Metrics, Params, Tags, Artifact, Model, Status, SetAside)}


def decode(d: dict) -> Record | None:
    """The typed record for a payload read from disk; None for a code this version does not know."""
    kind = KINDS.get(d.get("t"))
    return kind.from_dict(d) if kind is not None else None


def needs_file(rec: Record) -> str | None:
    """The local file a record uploads, when it is gone from disk (nothing to send, nothing refused)."""
    path = getattr(rec, "path", None)
    return path if path is not None and not Path(path).exists() else None
