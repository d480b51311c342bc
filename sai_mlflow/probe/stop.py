"""Stopping a probe session: SIGTERM, SIGINT and SIGHUP stop everything the session started.

`docker stop`, `scancel` and `kill` send SIGTERM, a terminal sends SIGINT (Ctrl-C) or SIGHUP. Each probe
trains in its own process group (`start_new_session`), so a terminal's Ctrl-C reaches only the session,
which stops the running probe's whole group itself: one signal stops the session, never just one probe
while the next one starts. A probe process also dies with the session when the session is SIGKILLed
(`die_with_parent`: the kernel's parent-death signal), and `sync` closes both runs from their spools. The
first signal counts; later ones are ignored while the session closes its runs (bounded by `GRACE_S` and the
spool's drain timeout).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
GRACE_S = 2.0  # a stopped probe's time to close its run through its spool before its group is SIGKILLed


class Stopped(KeyboardInterrupt):
    """The session was stopped by `signum`; it exits 128 + signum (143 SIGTERM, 130 SIGINT, 129 SIGHUP)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class SignalStop:
    """The session's signal handler: the first stop signal raises Stopped in the main thread, at once, or at
    the end of a `deferred()` block (creating a run and its spool, starting a probe: never half done)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._raised = False
        self._defer = 0

    def _handler(self, signum, frame) -> None:
        if self.signum is not None:
            return  # one stop: later signals cannot cut the closing short
        self.signum = signum
        if not self._defer:
            self._raised = True
            raise Stopped(signum)

    @contextmanager
    def deferred(self):
        self._defer += 1
        try:
            yield
        finally:
            self._defer -= 1
            if not self._defer and self.signum is not None and not self._raised:
                self._raised = True
                raise Stopped(self.signum)

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {sig: signal.signal(sig, self._handler) for sig in STOP_SIGNALS}
        try:
            yield self
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)


def stop_group(proc: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """SIGTERM to the probe's process group (the probe and anything it started), SIGKILL what is left after
    `grace_s`; returns once the probe process is reaped."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break  # the group is empty
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # the probe ended: SIGKILL whatever it left in its group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            break
    proc.wait()


def die_with_parent(parent_pid: int) -> None:
    """In a probe process: SIGKILL when the session dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG). At
    once, as its session: the device is freed, and what the probe logged is in its spool for `sync`."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except Exception:
        return  # not Linux: the session's own handler still stops the probe on SIGTERM/SIGINT/SIGHUP
    if os.getppid() != parent_pid:  # the session died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
