"""`python -m fhir_server serve` with no PHR_MONGODB_URI: the launcher runs SecantusDB itself, keeps
its data across restarts and stops it on exit (ARCHITECTURE.md item 3)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fhir_server.helpers import create
from tests.support import ROOT, TLS, Server, wait_until

pytestmark = pytest.mark.slow


class Launcher(Server):
    """The server as a user starts it: embedded database, optional CLI arguments."""

    def __init__(self, tmp: Path, *args: str) -> None:
        super().__init__({"PHR_DATA_DIR": str(tmp / "db"), "PHR_LOG_LEVEL": "INFO"}, tmp / "log")
        self.env.pop("PHR_MONGODB_URI", None)
        self.args = args
        self.data_dir = tmp / "db"

    def start(self) -> Launcher:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fhir_server", "serve", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._healthy, 60, what="the server to answer /healthz")
        return self

    def database_pids(self) -> list[int]:
        """SecantusDB processes serving this launcher's data directory."""
        return [pid for pid, cmd in processes() if "secantus" in cmd and str(self.data_dir) in cmd]

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        return [pid for pid, _ in processes() if parent(pid) == self.process.pid]


@pytest.fixture
def launch(tmp_path) -> Iterator[Callable[..., Launcher]]:
    """Start a launcher on `tmp_path`; whatever is left running at the end is stopped."""
    started: list[Launcher] = []

    def start(*args: str) -> Launcher:
        started.append(Launcher(tmp_path, *args))
        return started[-1].start()

    yield start
    for launcher in started:
        launcher.stop()
        for pid in launcher.database_pids():  # only if the launcher failed to stop it
            os.kill(pid, signal.SIGTERM)


def processes() -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue  # exited meanwhile
            found.append((int(entry.name), cmd))
    return found


def parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def fresh_client(server: Server) -> httpx.Client:
    """A client whose every request opens a new connection (so it may reach another worker)."""
    limits = httpx.Limits(max_keepalive_connections=0)
    return httpx.Client(
        base_url=server.url + "/fhir", verify=TLS, timeout=30, limits=limits, auth=server.auth()
    )


def started_workers(server: Launcher) -> set[int]:
    found = re.findall(r"Started server process \[(\d+)\]", server.log.read_text())
    return {int(pid) for pid in found}


def test_embedded_database_keeps_data_and_serves_two_workers(launch, tmp_path):
    first = launch()
    assert len(first.database_pids()) == 1, "the launcher started one embedded database"
    assert httpx.get(first.url + "/readyz", verify=TLS, timeout=10).status_code == 200
    # the CLIs find the running embedded database through the URI it leaves beside var/db
    env = {k: v for k, v in first.env.items() if k != "PHR_MONGODB_URI"}
    listed = subprocess.run(
        [sys.executable, "-m", "smart_auth", "clients", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    with fresh_client(first) as c:
        created = create(c, {"resourceType": "Patient", "active": True})
    first.stop()
    wait_until(lambda: not first.database_pids(), 30, what="the embedded database to stop")
    assert (tmp_path / "db").is_dir()
    assert not (tmp_path / "db.uri").exists(), "a stopped launcher leaves no URI behind"
    before = started_workers(first)

    second = launch("--workers", "2")  # same data directory
    wait_until(lambda: len(started_workers(second) - before) == 2, 30, what="two workers")
    workers = started_workers(second) - before
    assert workers <= set(second.worker_pids())
    assert len(second.database_pids()) == 1, "one database for all workers"
    with fresh_client(second) as writer, fresh_client(second) as reader:
        read = reader.get(f"/Patient/{created['id']}")
        assert read.status_code == 200
        assert read.json() == created, "data survives a restart"
        ids = [create(writer, {"resourceType": "Patient"})["id"] for _ in range(20)]
        for rid in ids:  # each read on a new connection, whichever worker takes it
            assert reader.get(f"/Patient/{rid}").status_code == 200
    second.stop()
    wait_until(lambda: not second.database_pids(), 30, what="the embedded database to stop")
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "workers stopped"
