"""One redaction rule for everything that leaves the process: printed lines, logs, params, tags, uploaded
files and spool metadata.

A value is hidden when its key looks secret (token, password, secret, api key, credential, auth,
private key, ...); inside any text, the `user:password@` part of a URL and known token shapes are
hidden too. The marker is `***redacted***` (docs/metrics.md).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MARKER = "***redacted***"

# short forms count only as a whole word of the key (`db_pass`, `PWD`, `dbPass`; not `bypass`, `compass`)
_SHORT_FORMS = r"(?<![a-z])(?:pass|pwd|passwd|passphrase|pword)(?![a-z])"
SECRET_KEY_RE = re.compile(
    r"(token|passw|secret|api[-_ ]?key|access[-_ ]?key|credential|auth|private[-_ ]?key|" + _SHORT_FORMS + ")",
    re.I)

# `scheme://user:password@host`: the password goes, the user name stays (it says who, not how)
_URL_USERINFO_RE = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^/\s@:'\"]*):(?P<pw>[^/\s'\"]+)@")
# Secrets the environment hands to MLflow or libpq: their values are hidden wherever they appear
SECRET_ENV = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "PGPASSWORD")
# known token shapes: GitHub, AWS access keys, Slack, OpenAI/Stripe-style, Hugging Face, JWTs, Google API keys
_TOKEN_RE = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_\-]{20,}|hf_[A-Za-z0-9]{20,}|AIza[0-9A-Za-z_\-]{35}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})")
# `password=...`, `db_pass: ...`, `password="..."`, `"token": "..."` inside free text (a connection string,
# an error message, a comment); a quoted value keeps its quotes
_INLINE_RE = re.compile(
    r"(?P<key>\b[\w.\-]*?(?:passw(?:or)?d|secret|token|api[-_]?key|credential|" + _SHORT_FORMS + r")[\w.\-]*)"
    r"(?P<kq>['\"]?)(?P<sep>\s*[=:]\s*)(?:(?P<q>['\"])(?P<qval>.*?)(?P=q)|(?P<val>[^\s&;,'\"]+))", re.I)


def is_secret_key(key: Any) -> bool:
    """`dbPass` reads as `db_Pass`: a camelCase word is a word too."""
    return bool(SECRET_KEY_RE.search(re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key))))


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
    return _INLINE_RE.sub(_hide_inline, s)


def _hide_inline(m: re.Match) -> str:
    value, quote = (m["qval"], m["q"]) if m["q"] else (m["val"], "")
    if value == MARKER or not value:
        return m[0]
    return f"{m['key']}{m['kq']}{m['sep']}{quote}{MARKER}{quote}"


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


def redact_yaml_text(text: str) -> str:
    """YAML text with secret keys' values and secrets inside values hidden (the rule of `redact_tree`), its
    layout, comments and line numbers kept: a replay's description cites lines of the history file it attaches.

    A changed scalar is rewritten as a double-quoted string padded with the newlines it spanned; the text
    between scalars (comments, punctuation) goes through `redact_text`. Text that is not YAML is redacted as
    plain text.
    """
    import json

    import yaml

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return redact_text(text)
    scalars: dict[int, tuple[int, str | None]] = {}  # start -> (end, replacement or None to keep)

    def walk(node, secret: bool) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(k, False)
                walk(v, isinstance(k, yaml.ScalarNode) and is_secret_key(k.value))
        elif isinstance(node, yaml.SequenceNode):
            for v in node.value:
                walk(v, secret)
        elif isinstance(node, yaml.ScalarNode) and node.start_mark.index not in scalars:
            start, end = node.start_mark.index, node.end_mark.index
            new = redact_text(node.value) if node.tag.endswith(":null") or not secret else MARKER
            scalars[start] = (end, None if new == node.value else
                              json.dumps(new, ensure_ascii=False) + "\n" * text.count("\n", start, end))

    if root is not None:
        walk(root, False)
    out, pos = [], 0
    for start in sorted(scalars):
        end, replacement = scalars[start]
        if start < pos:  # never inside another scalar; a malformed mark is left to the text rule
            continue
        out += [redact_text(text[pos:start]), text[start:end] if replacement is None else replacement]
        pos = end
    out.append(redact_text(text[pos:]))
    return "".join(out)


def redacted_yaml_copy(src: str | Path, dest: str | Path) -> Path:
    """Write a redacted copy of a YAML file (Ultralytics' args.yaml, a history file) to `dest`, for upload in
    its place (`redact_yaml_text`)."""
    text = Path(src).read_bytes().decode("utf-8", errors="replace")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(redact_yaml_text(text), encoding="utf-8")
    return dest


class RedactingStream:
    """A text stream whose every write goes through `redact_text`: what a command, Ultralytics or MLflow prints
    (a data path holding a token, an experiment name, a URL with a password) leaves the process redacted."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact_text(text) if text else text)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def redact_process_output() -> None:
    """From here on, this process's stdout, stderr and Ultralytics' log handler (bound to the stream it had at
    import) go through the rule: for a process no command boundary wraps, such as a DDP worker."""
    import logging

    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
    for handler in logging.getLogger("ultralytics").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler.stream, RedactingStream):
            handler.setStream(RedactingStream(handler.stream))
