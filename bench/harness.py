"""Start a SecantusDB and the server, seed data, run interleaved B C B C trials, report ratios.

Method: the performance research notes (protocol, sections 3-4), summarised in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

import httpx

from bench.load import LoadGenerator, Sample, Target
from fhir_server.embedded import EmbeddedDatabase, free_port

ROOT = Path(__file__).resolve().parent.parent
OBSERVATION = (Path(__file__).parent / "data" / "observation.json").read_bytes()
RESULTS = Path(__file__).parent / "results"
FHIR_JSON = "application/fhir+json"
MAX_ERROR_RATE = 0.001  # a trial with more failed requests than this is invalid
TOLERANCE = 0.05  # the worst pair may miss the goal by this much
_HEADER = "  pair   B req/s   C req/s    C/B   B p50/p99 ms   C p50/p99 ms  server us/req B/C"


@dataclass(frozen=True)
class Config:
    workloads: list[str]
    duration: int
    pairs: int
    warmup: int
    connections: int
    seed: int
    pin: bool
    retry_writes: bool


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    goal: float
    baseline: Target
    candidate: Target


@dataclass(frozen=True)
class Trial:
    sample: Sample
    server_cpu_s: float
    db_cpu_s: float

    @property
    def valid(self) -> bool:
        return self.sample.error_rate <= MAX_ERROR_RATE

    @property
    def server_us(self) -> float:
        """Server CPU microseconds per request."""
        return 1e6 * self.server_cpu_s / self.sample.requests if self.sample.requests else 0.0

    def summary(self) -> dict[str, Any]:
        cpu = self.server_cpu_s + self.db_cpu_s
        return {
            **asdict(self.sample),
            "rps": self.sample.rps,
            "server_cpu_s": self.server_cpu_s,
            "db_cpu_s": self.db_cpu_s,
            "req_per_cpu_s": self.sample.requests / cpu if cpu else None,
            "server_cpu_us_per_req": self.server_us,
            "valid": self.valid,
        }


@dataclass
class Result:
    workload: Workload
    pairs: list[tuple[Trial, Trial]] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [c.sample.rps / b.sample.rps if b.sample.rps else 0.0 for b, c in self.pairs]

    @property
    def cpu_ratios(self) -> list[float]:
        """C/B of requests per server CPU-second: the FHIR cost even when the server is not the
        bottleneck (the database and the load generator do the same work for B and C)."""
        return [b.server_us / c.server_us if c.server_us else 0.0 for b, c in self.pairs]

    @property
    def valid(self) -> bool:
        return all(b.valid and c.valid for b, c in self.pairs)

    @property
    def passed(self) -> bool:
        ratios, goal = self.ratios, self.workload.goal
        return self.valid and statistics.median(ratios) >= goal and min(ratios) >= goal - TOLERANCE

    def median(self, role: int, metric: Callable[[Sample], float]) -> float:
        return statistics.median(metric(pair[role].sample) for pair in self.pairs)

    def summary(self) -> dict[str, Any]:
        ratios = self.ratios
        return {
            "title": self.workload.title,
            "goal": self.workload.goal,
            "baseline": f"{self.workload.baseline.method} {self.workload.baseline.paths[0]}",
            "candidate": f"{self.workload.candidate.method} {self.workload.candidate.paths[0]}",
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "server_cpu_ratio_median": statistics.median(self.cpu_ratios),
            "valid": self.valid,
            "passed": self.passed,
            "pairs": [
                {
                    "baseline": b.summary(),
                    "candidate": c.summary(),
                    "ratio": r,
                    "server_cpu_ratio": q,
                }
                for (b, c), r, q in zip(self.pairs, ratios, self.cpu_ratios, strict=True)
            ],
        }


# -- processes --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc; 0 where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pinning(enabled: bool) -> tuple[list[str], list[str], str]:
    """(load prefix, server prefix, description). Server on the 2nd CPU; the rest on the 1st.

    This process pins itself to the first CPU, so the database it starts inherits that CPU too.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not enabled or len(cpus) < 2 or shutil.which("taskset") is None:
        return [], [], "none"
    load_cpu, server_cpu = cpus[0], cpus[1]
    os.sched_setaffinity(0, {load_cpu})
    return (
        ["taskset", "-c", str(load_cpu)],
        ["taskset", "-c", str(server_cpu)],
        f"server on CPU {server_cpu}; database and load generator on CPU {load_cpu}",
    )


class Server:
    """`python -m fhir_server serve` with the bare routes, one worker."""

    def __init__(self, db_uri: str, log: Path, pin: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PHR_MONGODB_URI": db_uri,
            "PHR_DB_NAME": "phr_bench",
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


# -- workloads --------------------------------------------------------------------------------


def seed_observations(url: str, count: int) -> list[str]:
    """Create `count` Observations through the FHIR API; their ids."""
    headers = {"Content-Type": FHIR_JSON, "Prefer": "return=minimal"}
    with httpx.Client(base_url=url, timeout=30) as client:

        def create(_: int) -> str:
            response = client.post("/fhir/Observation", content=OBSERVATION, headers=headers)
            response.raise_for_status()
            return response.headers["Location"].split("/")[-3]

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(create, range(count)))


def workload(key: str, url: str, seed: int) -> Workload:
    if key == "w1":
        ids = seed_observations(url, seed)
        return Workload(
            "w1",
            f"W1 read by id ({len(ids)} seeded Observations, random id per request)",
            0.85,
            Target("w1-bare", "GET", tuple(f"/bare/Observation/{i}" for i in ids)),
            Target("w1-fhir", "GET", tuple(f"/fhir/Observation/{i}" for i in ids)),
        )
    if key == "w3":
        return Workload(
            "w3",
            f"W3 create (Observation, {len(OBSERVATION)} bytes)",
            0.60,
            Target("w3-bare", "POST", ("/bare/Observation",), OBSERVATION, FHIR_JSON),
            Target("w3-fhir", "POST", ("/fhir/Observation",), OBSERVATION, FHIR_JSON),
        )
    raise ValueError(f"unknown workload {key}")


def measure(
    load: LoadGenerator, target: Target, config: Config, server: Server, db: EmbeddedDatabase
) -> Trial:
    if config.warmup:
        load.run(target, config.warmup)
    assert db.process is not None
    server_cpu, db_cpu = cpu_seconds(server.process.pid), cpu_seconds(db.process.pid)
    sample = load.run(target, config.duration)
    return Trial(
        sample,
        cpu_seconds(server.process.pid) - server_cpu,
        cpu_seconds(db.process.pid) - db_cpu,
    )


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def run_workload(
    load: LoadGenerator, work: Workload, config: Config, server: Server, db: EmbeddedDatabase
) -> Result:
    result = Result(work)
    print(f"\n{work.title}")
    print(f"  B = {work.baseline.method} {work.baseline.paths[0]}")
    print(f"  C = {work.candidate.method} {work.candidate.paths[0]}")
    print(_HEADER)
    for n in range(1, config.pairs + 1):
        b = measure(load, work.baseline, config, server, db)
        c = measure(load, work.candidate, config, server, db)
        result.pairs.append((b, c))
        flag = "" if b.valid and c.valid else "  INVALID (errors)"
        print(
            f"  {n:>4} {b.sample.rps:>9.1f} {c.sample.rps:>9.1f} {result.ratios[-1]:>6.3f}"
            f" {b.sample.p50_ms:>6.2f}/{b.sample.p99_ms:<7.2f} {c.sample.p50_ms:>6.2f}/"
            f"{c.sample.p99_ms:<7.2f} {b.server_us:>8.0f}/{c.server_us:<8.0f}{flag}"
        )
    for role, name in ((0, "B"), (1, "C")):
        rps, p50, p99 = (result.median(role, attrgetter(m)) for m in ("rps", "p50_ms", "p99_ms"))
        cpu = statistics.median(pair[role].server_us for pair in result.pairs)
        print(
            f"  median {name}: {rps:.1f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms,"
            f" server CPU {cpu:.0f} us/req"
        )
    print(f"  server CPU per request, C/B of req/server-CPU-s: {_spread(result.cpu_ratios)}")
    verdict = "PASS" if result.passed else "FAIL" if result.valid else "INVALID"
    print(f"{work.key} ratio C/B: {_spread(result.ratios)} goal >= {work.goal:.2f}: {verdict}")
    return result


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, text=True, capture_output=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def run(config: Config, argv: list[str]) -> int:
    load_pin, server_pin, pin_note = pinning(config.pin)
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="phr-bench-") as tmp:
        work_dir = Path(tmp)
        with EmbeddedDatabase(work_dir / "db") as db:
            # SecantusDB 0.7.0b3 scans (past 10,000: sorts) every retryable-write record on
            # each write, so with retryWrites the database slows down as W3 runs; off by default.
            uri = db.uri if config.retry_writes else db.uri + "&retryWrites=false"
            server = Server(uri, work_dir / "server.log", server_pin)
            try:
                load = LoadGenerator(
                    "127.0.0.1", server.port, work_dir, config.connections, load_pin
                )
                print(
                    f"load generator: {load.tool}, {config.connections} connections;"
                    f" pinning: {pin_note}"
                )
                print(
                    f"{config.pairs} B/C pairs of {config.duration} s trials"
                    f" (+{config.warmup} s warm-up each)"
                )
                results = [
                    run_workload(load, workload(key, server.url, config.seed), config, server, db)
                    for key in config.workloads
                ]
            finally:
                server.stop()
    report = {
        "started": started.isoformat(),
        "command": ["python", "-m", "bench", *argv],
        "git": _git_revision(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_generator": load.tool,
        "pinning": pin_note,
        "config": asdict(config),
        "workloads": {r.workload.key: r.summary() for r in results},
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults: {out}")
    return 0 if all(r.valid for r in results) else 1
