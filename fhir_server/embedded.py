"""The embedded database: SecantusDB run as a subprocess (GPL-2.0, so never imported here).

ARCHITECTURE.md, item 3: with no `PHR_MONGODB_URI`, the launcher starts it on a free port with a
data directory that survives restarts, waits until it answers, and stops it on exit.
"""

from __future__ import annotations

import importlib.util
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger("phr")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedDatabase:
    """`with EmbeddedDatabase(path) as db: db.uri` - a SecantusDB subprocess for the block."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        timeout: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.timeout = timeout
        self.extra_args = extra_args  # e.g. --enable-test-commands, for fault-injection tests
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri_file(self) -> Path:
        """Where a running launcher leaves the URI, so `python -m smart_auth` and the loader find
        the embedded database without being told (`var/db.uri` beside `var/db`)."""
        return self.data_dir.with_name(self.data_dir.name + ".uri")

    @property
    def uri(self) -> str:
        # retryWrites=false: SecantusDB 0.7.0b3 rescans every retryable-write record it keeps (30
        # minutes, up to 10,000) on each write, so with retries on, writes slow down ~7x under load.
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true&retryWrites=false"

    def start(self) -> EmbeddedDatabase:
        if importlib.util.find_spec("secantus") is None:
            raise RuntimeError(
                "PHR_MONGODB_URI is not set and the embedded database is not installed: "
                "pip install 'phr-server[embedded]' or point PHR_MONGODB_URI at MongoDB"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.data_dir.parent / "secantus.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "secantus",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                str(self.data_dir),
                "--log-level",
                "WARNING",
                *self.extra_args,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
        )
        log_file.close()
        deadline = time.monotonic() + self.timeout
        while not _answers(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"the embedded database exited (see {log_file.name})")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the embedded database did not start in time")
            time.sleep(0.05)
        log.info(
            "embedded database", extra={"fields": {"port": self.port, "dir": str(self.data_dir)}}
        )
        self.uri_file.write_text(self.uri + "\n")
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.uri_file.unlink(missing_ok=True)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedDatabase:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["EmbeddedDatabase", "free_port"]
