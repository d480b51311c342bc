"""A private PostgreSQL cluster on 127.0.0.1 for the team-scale tests (real server, real driver).

initdb refuses to run as root, so as root the cluster is created and run by the `postgres` user in a
folder that user owns. When the server binaries are missing they are installed with apt, not skipped:
the team tests must run in CI.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "sai"


def find_bindir() -> Path | None:
    """The folder holding initdb/pg_ctl: Debian's versioned folder first, then PATH."""
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(cand).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def ensure_binaries() -> Path:
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=False, env=env, capture_output=True)
    r = subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "postgresql"], env=env,
                       capture_output=True, text=True)
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries are missing and `apt-get install -y postgresql` "
                           f"did not provide them:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
    return bindir


class PgCluster:
    """initdb + pg_ctl on a free port; password login over TCP (scram), so URIs carry a real password."""

    def __init__(self, port: int, password: str) -> None:
        self.bindir = ensure_binaries()
        self.port = port
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="sai-pg-"))
        self.data = self.dir / "data"
        self.as_root = os.geteuid() == 0

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        full = (["runuser", "-u", "postgres", "--"] if self.as_root else []) + list(cmd)
        r = subprocess.run(full, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stdout[-1500:]}{r.stderr[-1500:]}")
        return r

    def init(self) -> None:
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(pwfile, 0o600)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                  "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync")
        pwfile.unlink()

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"),
                  "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def uri(self, db: str = "postgres", driver: str = "postgresql", user: str = SUPERUSER,
            password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"{driver}://{user}:{pw}@127.0.0.1:{self.port}/{db}"

    def create_db(self, name: str) -> str:
        """A fresh database; returns its URI (with the password)."""
        import psycopg

        with psycopg.connect(self.uri().replace("postgresql://", "postgresql://", 1), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.uri(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def destroy(self) -> None:
        try:
            self.stop()
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
