"""The processes a bench run measures: a SecantusDB over a data directory and the server on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from fhir_server.embedded import EmbeddedDatabase, free_port

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "phr_bench"


class Server:
    """`python -m fhir_server serve` with the bare routes, one worker."""

    def __init__(self, db_uri: str, log: Path, pin: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PHR_MONGODB_URI": db_uri,
            "PHR_DB_NAME": DB_NAME,
            "PHR_BENCH_ROUTES": "1",
            "PHR_LOG_LEVEL": "WARNING",
            "PHR_PORT": str(self.port),
        }
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [*pin, sys.executable, "-m", "fhir_server", "serve"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start; see {log}")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def serving(
    db_dir: Path, log: Path, pin: list[str], retry_writes: bool = False
) -> Iterator[tuple[EmbeddedDatabase, Server]]:
    """A database over `db_dir` and the server on it, both stopped (in order) on exit."""
    with EmbeddedDatabase(db_dir) as db:
        # SecantusDB 0.7.0b3 scans (past 10,000: sorts) every retryable-write record on each
        # write, so with retryWrites the database slows down as writes accumulate; off by default.
        uri = db.uri.replace("&retryWrites=false", "")
        uri += "&retryWrites=" + ("true" if retry_writes else "false")
        server = Server(uri, log, pin)
        try:
            yield db, server
        finally:
            server.stop()
