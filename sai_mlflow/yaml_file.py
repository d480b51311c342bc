"""Reading a YAML file that must hold a mapping: one clear error of the caller's type, never a traceback."""

from __future__ import annotations

from pathlib import Path

import yaml


def load_mapping(path: str | Path, error: type[Exception], what: str, expected: str = "a mapping") -> dict:
    """The file's mapping ({} for an empty file); `error(message)` when missing, unreadable or not a mapping."""
    p = Path(path).expanduser()
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} {p} does not exist (not found)") from None
    except IsADirectoryError:
        raise error(f"{what} {p} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise error(f"{what} {p} is not a text file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise error(f"{what} {p}: not valid YAML{at}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise error(f"{what} {p}: expected {expected}, got {type(doc).__name__}")
    return doc
