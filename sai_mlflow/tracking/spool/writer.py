"""Who writes a spool: the writer's PID and start time in its lock file, and whether that process lives.

The spool's `lock` is an flock, and a forked child (a DataLoader worker, anything started with fork)
shares it: after a SIGKILL of the writer such a child can hold the flock for seconds more, and `sync`
said "a live process is still writing". The lock file names the writer (`PID START`, START being the
kernel's start time of that process, so a reused PID is told apart); `sync` asks whether that process
still runs, not how old a file is. A forked child drops its copy of the writer's lock at fork.
"""

from __future__ import annotations

import fcntl
import os
import weakref
from pathlib import Path

_held: weakref.WeakSet = weakref.WeakSet()  # Spools whose writer lock this process holds


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()  # after "(comm)": state is field 3, starttime field 22


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks after boot), or None when no such process runs."""
    f = _stat_fields(pid)
    return f[19] if f and len(f) > 19 else None


def lock_record(pid: int | None = None) -> str:
    """What the writer writes into its lock file: `PID START`."""
    pid = os.getpid() if pid is None else pid
    return f"{pid} {process_start(pid) or ''}".strip() + "\n"


def writer_alive(record: str) -> bool:
    """Whether the process a lock record names still runs (and is that process: same start time)."""
    parts = record.split()
    try:
        pid = int(parts[0])
    except (IndexError, ValueError):
        return False
    f = _stat_fields(pid)
    if f is None:
        if not Path("/proc/self/stat").exists():  # no /proc: ask the kernel about the PID alone
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass
            return True
        return False
    if f[0] in ("Z", "X"):  # killed, not yet reaped by its parent: it writes nothing any more
        return False
    return len(parts) < 2 or (len(f) > 19 and f[19] == parts[1])


def writer_of(spool) -> tuple[int | None, bool]:
    """(the writer's PID as its lock file records it, whether that process still runs)."""
    try:
        record = (spool.dir / "lock").read_text()
    except OSError:
        return None, False
    try:
        pid = int(record.split()[0])
    except (IndexError, ValueError):
        return None, False
    return pid, writer_alive(record)


def take_over(spool) -> int | None:
    """When the writer is gone but its flock lingers in a child it forked: an flock on the spool's folder
    instead, so two `sync`s never upload one spool at once. The folder's fd (release with `release`), or None."""
    fd = os.open(spool.dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def held(spool) -> None:
    """Note a spool whose writer lock this process took: a forked child closes its copy (below)."""
    _held.add(spool)


def _drop_inherited_locks() -> None:
    """In a forked child: close (never unlock: that would unlock the parent too) the inherited lock fds."""
    for spool in list(_held):
        fd = getattr(spool, "_lock_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
            spool._lock_fd = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)
