"""A private PostgreSQL cluster for the embedded broker's durable storage (Debian's ``postgresql``).

The cluster lives in one folder (``<data_dir>/postgres``), listens on 127.0.0.1 only, trusts local
connections and is started and stopped with the stack. PostgreSQL refuses to run as root, so as
root it runs as the ``postgres`` user (``runuser``), which owns the folder.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

from services.core.errors import AstrostreamError
from services.kafka.broker import free_port

log = logging.getLogger(__name__)

USER = "tansu"  # the cluster's superuser, the one Tansu connects as
DATABASE = "postgres"


class PostgresError(AstrostreamError):
    """PostgreSQL is not installed, or the private cluster could not start."""


def postgres_bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on PATH, else Debian's newest /usr/lib/postgresql/N."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")

    def version(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/", path)
        return int(match.group(1)) if match else 0

    return Path(max(found, key=version)).parent if found else None


class PostgresCluster:
    """The cluster in ``root`` (created by ``initdb`` on first start) on a free local port."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root.resolve()
        self.data = self.root / "data"
        self.port = port
        self._running = False

    @property
    def url(self) -> str:
        return f"postgres://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run_as(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresError("running as root and there is no 'postgres' user") from None
        self.root.mkdir(parents=True, exist_ok=True)
        for path in [self.root, *self.root.rglob("*")]:
            if path.stat().st_uid != owner.pw_uid:
                os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
        runas = ["runuser", "-u", "postgres", "--"]
        if subprocess.run([*runas, "test", "-w", str(self.root)], check=False).returncode != 0:
            raise PostgresError(
                f"the 'postgres' user cannot write {self.root} (a folder above it is closed to "
                "other users); set ASTRO_DATA_DIR to a folder it can reach"
            )
        return runas

    def _pg(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise PostgresError("PostgreSQL is not installed (apt-get install postgresql)")
        cmd = [*self._run_as(), str(bin_dir / tool), *args]
        try:
            return subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresError(f"{tool} failed: {exc}") from None

    def start(self) -> PostgresCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").exists():
            done = self._pg(
                "initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8"
            )
            if done.returncode != 0:
                raise PostgresError(f"initdb failed: {_last_line(done)}")
        if self._pg("pg_ctl", "-D", str(self.data), "status").returncode == 0:
            log.info("stopping the PostgreSQL left running in %s", self.data)  # a killed stack
            self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.port = self.port or free_port()
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        logfile = str(self.root / "postgres.log")
        done = self._pg(
            "pg_ctl", "-D", str(self.data), "-l", logfile, "-w", "-t", "60", "-o", options, "start"
        )
        if done.returncode != 0:
            raise PostgresError(
                f"PostgreSQL did not start ({_last_line(done)}); see {self.root / 'postgres.log'}"
            )
        self._running = True
        log.info("PostgreSQL for the embedded broker on 127.0.0.1:%d (%s)", self.port, self.data)
        return self

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        with contextlib.suppress(PostgresError):
            self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    """The error the tool printed (stderr first: initdb's stdout ends with chatter)."""
    for text in (done.stderr, done.stdout):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return f"exit code {done.returncode}"
