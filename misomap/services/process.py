"""A child process with a log file, a readiness probe and guaranteed teardown."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from misomap.core.errors import ServiceError

log = logging.getLogger(__name__)


def free_port(need_offset: int | None = None, low: int = 20000, high: int = 45000) -> int:
    """A free loopback port; with need_offset, port+need_offset is free too (SeaweedFS gRPC)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not low <= port <= high:
            port = low + (port % (high - low))
        if not _port_free(port):
            continue
        if need_offset is not None and not _port_free(port + need_offset):
            continue
        return port
    raise ServiceError("no free loopback port found")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ManagedProcess:
    """Run `cmd` in its own process group, logging to `log_path`; stop() always reaps it."""

    def __init__(self, name: str, cmd: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        """Start and poll `ready` until it holds; raise ServiceError with the log if it never does."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "wb")  # noqa: SIM115 - owned by the child for its lifetime
        try:
            self.proc = subprocess.Popen(self.cmd, stdout=logf, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=self.cwd, start_new_session=True)
        except FileNotFoundError as err:
            raise ServiceError(f"{self.name}: cannot run {self.cmd[0]!r}: {err}") from None
        finally:
            logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with code {self.proc.returncode}\n{self.log_text()}")
            try:
                if ready():
                    log.info("%s ready (pid %d)", self.name, self.proc.pid)
                    return
            except Exception:  # noqa: BLE001 - probe failures mean "not ready yet"
                pass
            time.sleep(0.2)
        self.stop()
        raise ServiceError(f"{self.name} not ready after {timeout:.0f}s\n{self.log_text()}")

    def log_text(self, tail: int = 8000) -> str:
        """The last `tail` characters of the service log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return f"--- {self.name} log ({self.log_path}) ---\n{text[-tail:]}"

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM the process group, then SIGKILL after `grace` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        except ProcessLookupError:
            pass
