"""Real processes for tests: a SecantusDB and the server, each on a free port."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from fhir_server.embedded import EmbeddedDatabase, free_port

ROOT = Path(__file__).resolve().parent.parent
# One TLS context for every test client (`verify=TLS`): httpx builds one per client otherwise,
# loading the CA bundle each time (~90 ms), even for the plain-HTTP servers of the tests.
TLS = ssl.create_default_context()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


class Server:
    """`python -m fhir_server serve` in a subprocess, as `make run` starts it."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = {**os.environ, "PHR_LOG_LEVEL": "WARNING", **env, "PHR_PORT": str(self.port)}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"server exited; see {self.log}")
        try:
            return httpx.get(self.url + "/healthz", timeout=1, verify=TLS).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self) -> Server:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fhir_server", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._healthy, 60, what="the server to answer /healthz")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


__all__ = ["TLS", "EmbeddedDatabase", "Server", "free_port", "wait_until"]
