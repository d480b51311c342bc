"""One redaction rule for everything that leaves the process: printed lines, logs, params, tags, uploaded
files and spool metadata.

A value is hidden when its key looks secret (token, password, secret, api key, credential, auth,
private key, ...); inside any text, the `user:password@` part of a URL and known token shapes are
hidden too. The marker is `***redacted***` (docs/metrics.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MARKER = "***redacted***"

SECRET_KEY_RE = re.compile(
    r"(token|passw|secret|api[-_ ]?key|access[-_ ]?key|credential|auth|private[-_ ]?key)", re.I)

# `scheme://user:password@host`: the password goes, the user name stays (it says who, not how)
_URL_USERINFO_RE = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^/\s@:'\"]*):(?P<pw>[^/\s'\"]+)@")
# Secrets the environment hands to MLflow or libpq: their values are hidden wherever they appear
SECRET_ENV = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "PGPASSWORD")
# known token shapes: GitHub, AWS access keys, Slack, OpenAI/Stripe-style, Hugging Face, JWTs, Google API keys
_TOKEN_RE = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_\-]{20,}|hf_[A-Za-z0-9]{20,}|AIza[0-9A-Za-z_\-]{35}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})")
# `password=...` / `token: ...` inside free text (a connection string, an error message)
_INLINE_RE = re.compile(
    r"(?P<key>\b[\w.\-]*(?:passw(?:or)?d|secret|token|api[-_]?key|credential)[\w.\-]*)(?P<sep>\s*[=:]\s*)"
    r"(?P<val>[^\s&;,'\"]+)", re.I)


def is_secret_key(key: Any) -> bool:
    return bool(SECRET_KEY_RE.search(str(key)))


def redact_text(text: Any) -> str:
    """Any text with URL credentials, known token shapes and `password=...` pairs hidden."""
    s = str(text)
    if "@" in s:
        s = _URL_USERINFO_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{MARKER}@", s)
    for name in SECRET_ENV:
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:
            s = s.replace(secret, MARKER)
    s = _TOKEN_RE.sub(MARKER, s)
    return _INLINE_RE.sub(lambda m: f"{m['key']}{m['sep']}{MARKER}" if m["val"] != MARKER else m[0], s)


def redact_value(key: Any, value: Any) -> str:
    """A param/tag value as text: hidden whole when the key looks secret, else with secrets inside it hidden."""
    return MARKER if is_secret_key(key) else redact_text(value)


def redact_mapping(items: dict) -> dict[str, str]:
    """Params or tags, ready to leave the process."""
    return {k: redact_value(k, v) for k, v in items.items()}


def redact_tree(obj: Any, key: Any = "") -> Any:
    """A parsed YAML/JSON document with secret keys' values and secrets inside strings hidden (for uploaded copies)."""
    if is_secret_key(key) and obj is not None and not isinstance(obj, (dict, list)):
        return MARKER
    if isinstance(obj, dict):
        return {k: redact_tree(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_tree(v, key) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def without_credentials(uri: str) -> str:
    """The URI with its password removed, the user name kept (what a stored copy may hold: libpq then takes
    the password from PGPASSWORD or ~/.pgpass, MLflow from MLFLOW_TRACKING_PASSWORD)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return redact_text(uri)
    if "@" not in (parts.netloc or ""):
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))


def has_credentials(uri: str) -> bool:
    return without_credentials(uri) != uri


def redacted_yaml_copy(src: str | Path, dest: str | Path) -> Path:
    """Write a redacted copy of a YAML file (e.g. Ultralytics' args.yaml) to `dest`, for upload in its place.

    A file that does not parse as YAML is copied as redacted text.
    """
    import yaml

    text = Path(src).read_bytes().decode("utf-8", errors="replace")
    try:
        doc = yaml.safe_load(text)
        out = text if doc is None else yaml.safe_dump(redact_tree(doc), sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        out = redact_text(text)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(out, encoding="utf-8")
    return dest
