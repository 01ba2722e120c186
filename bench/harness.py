"""Start a SecantusDB and the server, seed data, run interleaved B C B C trials, report ratios.

Method: the performance research notes (protocol, sections 3-4), summarised in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from bench import dataset
from bench.dataset import LOINC, Dataset
from bench.load import LoadGenerator, Sample, Target, drain
from bench.server import ROOT, Server, serving
from fhir_server.embedded import EmbeddedDatabase
from fhir_server.search.query import prefix_range
from fhir_server.search.values import PART, PATIENT, VALUE

OBSERVATION = (Path(__file__).parent / "data" / "observation.json").read_bytes()
W3_BODIES = 1000  # distinct Observations W3 posts (B and C alike), as a client's data varies
RESULTS = Path(__file__).parent / "results"
FHIR_JSON = "application/fhir+json"
JSON = "application/json"
MAX_ERROR_RATE = 0.001  # a trial with more failed requests than this is invalid
TOLERANCE = 0.05  # the worst pair may miss the goal by this much
DATASET_WORKLOADS = frozenset({"w2", "w4", "w5"})
SEARCHES = 2000  # W2 (patient, code) pairs drawn per run
_HEADER = (
    "  pair  B {u}/s  C {u}/s    C/B   B p50/p95/p99 ms     C p50/p95/p99 ms      server us/req B/C"
)


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
    sets: tuple[int, int]  # Synthea clone sets of the (growth baseline, main) datasets
    rebuild: bool
    quick: bool


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    goal: float | None  # None: shown for what it explains, not judged
    baseline: Target
    candidate: Target
    connections: int | None = None  # None: --connections
    drained: bool = False  # requests take seconds: `load.drain`, not wrk (W4)
    unit: str = "req"
    per_request: int = 1  # units per request (W4: resources per bundle)
    latency: bool = False  # also a B and a C trial at one connection
    latency_goal: tuple[float | None, float | None] = (None, None)  # C's (p50, p95) ms there


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

    @property
    def db_us(self) -> float:
        """Database CPU microseconds per request."""
        return 1e6 * self.db_cpu_s / self.sample.requests if self.sample.requests else 0.0

    def summary(self, per_request: int = 1) -> dict[str, Any]:
        cpu = self.server_cpu_s + self.db_cpu_s
        units = self.sample.requests * per_request
        return {
            **asdict(self.sample),
            "rps": self.sample.rps,
            "units_per_s": self.sample.rps * per_request,
            "server_cpu_s": self.server_cpu_s,
            "db_cpu_s": self.db_cpu_s,
            "units_per_cpu_s": units / cpu if cpu else None,
            "units_per_server_cpu_s": units / self.server_cpu_s if self.server_cpu_s else None,
            "server_cpu_us_per_req": self.server_us,
            "db_cpu_us_per_req": self.db_us,
            "valid": self.valid,
        }


@dataclass
class Result:
    workload: Workload
    pairs: list[tuple[Trial, Trial]] = field(default_factory=list)
    latency: tuple[Trial, Trial] | None = None  # (B, C) at one connection

    @property
    def ratios(self) -> list[float]:
        return [c.sample.rps / b.sample.rps if b.sample.rps else 0.0 for b, c in self.pairs]

    @property
    def cpu_ratios(self) -> list[float]:
        """C/B of requests per server CPU-second: the FHIR cost even when the server is not the
        bottleneck."""
        return [b.server_us / c.server_us if c.server_us else 0.0 for b, c in self.pairs]

    @property
    def db_cpu_ratios(self) -> list[float]:
        """C/B of requests per database CPU-second: 1 where C asks the database for the same
        work as B; below 1 it bounds C/B when the database is the bottleneck (W4: C also
        writes the search keys)."""
        return [b.db_us / c.db_us if c.db_us else 0.0 for b, c in self.pairs]

    @property
    def valid(self) -> bool:
        trials = [t for pair in self.pairs for t in pair] + list(self.latency or ())
        return all(t.valid for t in trials)

    @property
    def passed(self) -> bool:
        ratios, goal = self.ratios, self.workload.goal
        if goal is None:
            return self.valid
        return self.valid and statistics.median(ratios) >= goal and min(ratios) >= goal - TOLERANCE

    def median(self, role: int, metric: Callable[[Sample], float]) -> float:
        return statistics.median(metric(pair[role].sample) for pair in self.pairs)

    def summary(self) -> dict[str, Any]:
        ratios, work = self.ratios, self.workload
        return {
            "title": work.title,
            "goal": work.goal,
            "baseline": f"{work.baseline.method} {work.baseline.paths[0]}",
            "candidate": f"{work.candidate.method} {work.candidate.paths[0]}",
            "connections": work.connections,
            "unit": work.unit,
            "per_request": work.per_request,
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "server_cpu_ratio_median": statistics.median(self.cpu_ratios),
            "db_cpu_ratio_median": statistics.median(self.db_cpu_ratios),
            "valid": self.valid,
            "passed": self.passed,
            "pairs": [
                {
                    "baseline": b.summary(work.per_request),
                    "candidate": c.summary(work.per_request),
                    "ratio": r,
                    "server_cpu_ratio": q,
                    "db_cpu_ratio": d,
                }
                for (b, c), r, q, d in zip(
                    self.pairs, ratios, self.cpu_ratios, self.db_cpu_ratios, strict=True
                )
            ],
            "latency_1_connection": {
                "baseline": self.latency[0].summary(work.per_request),
                "candidate": self.latency[1].summary(work.per_request),
            }
            if self.latency
            else None,
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


@dataclass(frozen=True)
class Bench:
    """What a trial runs against."""

    config: Config
    load: LoadGenerator
    server: Server
    db: EmbeddedDatabase


# -- workloads --------------------------------------------------------------------------------


def seed_observations(server: Server, count: int) -> list[str]:
    """Create `count` Observations through the FHIR API; their ids."""
    headers = {"Content-Type": FHIR_JSON, "Prefer": "return=minimal", **dict(server.bearer())}
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def create(_: int) -> str:
            response = client.post("/fhir/Observation", content=OBSERVATION, headers=headers)
            response.raise_for_status()
            return response.headers["Location"].split("/")[-3]

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(create, range(count)))


def observations(count: int) -> tuple[bytes, ...]:
    """`count` variants of the W3 Observation, as one client's creates differ: the patient (one
    of 100), encounter, times and value vary; code, category, units and tags repeat."""
    rng = random.Random(3)
    template = json.loads(OBSERVATION)
    patients = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(100)]
    out = []
    for _ in range(count):
        body = json.loads(json.dumps(template))
        body["subject"]["reference"] = f"Patient/{rng.choice(patients)}"
        body["encounter"]["reference"] = f"Encounter/{uuid.UUID(int=rng.getrandbits(128))}"
        when = datetime(2010, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(400_000_000))
        body["effectiveDateTime"] = when.isoformat()
        body["issued"] = (when + timedelta(milliseconds=rng.randrange(10**6))).isoformat(
            timespec="milliseconds"
        )
        body["valueQuantity"]["value"] = round(rng.uniform(50, 200), 10)
        out.append(json.dumps(body, indent=2).encode())
    return tuple(out)


def create() -> tuple[Workload, Workload]:
    """W3: `POST /fhir/Observation` vs `insert_one` of the same document with its search keys (the
    same index entries), and the variant without them."""
    bodies = observations(W3_BODIES)
    resources = [json.loads(body) for body in bodies]

    def baseline(keys: bool) -> tuple[bytes, ...]:
        return tuple(json.dumps(dataset.baseline_item(r, keys)).encode() for r in resources)

    size = statistics.median(map(len, bodies))
    work = Workload(
        "w3",
        f"W3 create ({len(bodies)} Observations like bench/data/observation.json,"
        f" {size:.0f} bytes)",
        0.60,
        Target("w3-bare", "POST", ("/bare/Observation",), bodies=baseline(True)),
        Target("w3-fhir", "POST", ("/fhir/Observation",), bodies=bodies),
    )
    keyless = Target("w3v-bare", "POST", ("/bare/Observation",), bodies=baseline(False))
    return work, replace(
        work,
        key="w3-variant",
        title="W3 variant: the baseline without search keys",
        goal=None,
        baseline=keyless,
    )


def searches(data: Dataset) -> tuple[Workload, Workload]:
    """W2 over the dataset's patients: (patient + LOINC code, patient + vital signs since a date).

    The baselines run the patient's `k` query the engine's driver is meant to issue
    (docs/search.md), with the page size as limit.
    """
    rng = random.Random(2)
    code_b, code_c = [], []
    for _ in range(SEARCHES):
        source, pid = rng.choice(data.patients)
        code = rng.choice(source.codes)
        query = {"patient": pid, "code": f"{LOINC}|{code}", "_count": 20}
        code_c.append("/fhir/Observation?" + urlencode(query))
        key = f"code{VALUE}{code}{PATIENT}{pid}{PART}{LOINC}"  # index.confined_ranges
        code_b.append("/bare/_k/Observation?" + urlencode({"k": key, "limit": 20}))
    date_b, date_c = [], []
    for source, pid in data.patients:
        query = {"patient": pid, "category": "vital-signs", "date": f"ge{source.vital_from}"}
        date_c.append("/fhir/Observation?" + urlencode({**query, "_count": 20}))
        low, high = prefix_range(f"category{VALUE}vital-signs{PATIENT}{pid}{PART}")
        date_b.append("/bare/_k/Observation?" + urlencode({"gte": low, "lt": high, "limit": 20}))
    size = f"{data.resources:,} resources, {len(data.patients)} patients"
    return (
        Workload(
            "w2",
            f"W2 search patient + code ({size}; {SEARCHES} random patient/code pairs)",
            0.75,
            Target("w2-bare", "GET", tuple(code_b)),
            Target("w2-fhir", "GET", tuple(code_c)),
            latency=True,
            latency_goal=(None, 10.0),
        ),
        Workload(
            "w2-variant",
            f"W2 variant: patient + category=vital-signs + date=ge ({size})",
            0.75,
            Target("w2v-bare", "GET", tuple(date_b)),
            Target("w2v-fhir", "GET", tuple(date_c)),
            latency=True,
            latency_goal=(None, 10.0),
        ),
    )


def ingest(quick: bool) -> tuple[Workload, Workload]:
    """W4: a whole Synthea transaction vs `insert_many` of its already-resolved resources with the
    documents' search keys (the same index entries: the database's write ceiling), and the
    variant without them (what writing the keys costs the database)."""
    ordered = sorted(dataset.sources(), key=attrgetter("entries"))
    source = ordered[0] if quick else ordered[len(ordered) // 2]  # quick: the smallest bundle
    bundle = dataset.clone(source.text)
    size = f"{source.name}: {source.entries} resources, {len(bundle):,} bytes"
    work = Workload(
        "w4",
        f"W4 transaction ingest ({size}; server-assigned ids each time)",
        0.50,
        Target("w4-bare", "POST", ("/bare/_ingest",), dataset.resolved(bundle, keys=True), JSON),
        Target("w4-fhir", "POST", ("/fhir",), bundle, FHIR_JSON),
        connections=2 if quick else 4,
        drained=True,
        unit="res",
        per_request=source.entries,
    )
    keyless = Target("w4v-bare", "POST", ("/bare/_ingest",), dataset.resolved(bundle, False), JSON)
    variant = replace(
        work,
        key="w4-variant",
        title=f"W4 variant: the baseline without search keys ({size})",
        goal=None,
        baseline=keyless,
    )
    return work, variant


def everything(data: Dataset) -> Workload:
    pid, size = data.everything_patient, data.manifest["everything"]["resources"]
    return Workload(
        "w5",
        f"W5 Patient/$everything (a patient with {size} resources)",
        0.70,
        Target("w5-bare", "GET", (f"/bare/_everything/{pid}",)),
        Target("w5-fhir", "GET", (f"/fhir/Patient/{pid}/$everything?_count=1000",)),
        connections=4,
        drained=True,
        latency=True,
        latency_goal=(25.0, 50.0),
    )


def workloads(key: str, server: Server, config: Config, data: Dataset | None) -> list[Workload]:
    if key == "w1":
        ids = seed_observations(server, config.seed)
        return [
            Workload(
                "w1",
                f"W1 read by id ({len(ids)} seeded Observations, random id per request)",
                0.85,
                Target("w1-bare", "GET", tuple(f"/bare/Observation/{i}" for i in ids)),
                Target("w1-fhir", "GET", tuple(f"/fhir/Observation/{i}" for i in ids)),
            )
        ]
    if key == "w3":
        return list(create())
    if key == "w4":
        return list(ingest(config.quick))
    assert data is not None
    return list(searches(data)) if key == "w2" else [everything(data)]


# -- trials -----------------------------------------------------------------------------------


def measure(bench: Bench, work: Workload, target: Target, connections: int | None = None) -> Trial:
    config = bench.config
    conns = connections or work.connections or config.connections
    if target.paths[0].startswith("/fhir"):  # the FHIR API needs a bearer token; bare routes not
        target = replace(target, headers=bench.server.bearer())

    def trial(seconds: int) -> Sample:
        if work.drained:
            return drain(bench.server.url, target, conns, seconds)
        return bench.load.run(target, seconds, conns)

    if config.warmup:
        trial(config.warmup)
    assert bench.db.process is not None
    server_pid, db_pid = bench.server.process.pid, bench.db.process.pid
    server_cpu, db_cpu = cpu_seconds(server_pid), cpu_seconds(db_pid)
    sample = trial(config.duration)
    return Trial(sample, cpu_seconds(server_pid) - server_cpu, cpu_seconds(db_pid) - db_cpu)


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def _latencies(sample: Sample) -> str:
    return f"{sample.p50_ms:.2f}/{sample.p95_ms:.2f}/{sample.p99_ms:.2f}"


def latency_pair(bench: Bench, work: Workload) -> tuple[Trial, Trial]:
    """A B and a C trial at one connection: latency without queueing."""
    b = measure(bench, work, work.baseline, 1)
    c = measure(bench, work, work.candidate, 1)
    for name, trial in (("B", b), ("C", c)):
        flag = "" if trial.valid else "  INVALID (errors)"
        print(
            f"  1 connection {name}: {trial.sample.rps:.1f} req/s,"
            f" p50/p95/p99 {_latencies(trial.sample)} ms{flag}"
        )
    return b, c


def latency_verdict(work: Workload, sample: Sample) -> str:
    p50, p95 = work.latency_goal
    goals: list[tuple[str, bool]] = []
    if p50 is not None:
        goals.append((f"p50 <= {p50:g} ms", sample.p50_ms <= p50))
    if p95 is not None:
        goals.append((f"p95 <= {p95:g} ms", sample.p95_ms <= p95))
    verdict = "PASS" if all(ok for _, ok in goals) else "FAIL"
    return f"latency goal at 1 connection, C {' and '.join(g for g, _ in goals)}: {verdict}"


def run_workload(bench: Bench, work: Workload) -> Result:
    result = Result(work)
    conns = work.connections or bench.config.connections
    print(f"\n{work.title}")
    print(f"  B = {work.baseline.method} {work.baseline.paths[0]}")
    print(f"  C = {work.candidate.method} {work.candidate.paths[0]}")
    print(f"  {conns} connections{' (every request finishes)' if work.drained else ''}")
    print(_HEADER.format(u=f"{work.unit:>3}"))
    n = work.per_request
    for pair in range(1, bench.config.pairs + 1):
        b = measure(bench, work, work.baseline)
        c = measure(bench, work, work.candidate)
        result.pairs.append((b, c))
        flag = "" if b.valid and c.valid else "  INVALID (errors)"
        print(
            f"  {pair:>4} {b.sample.rps * n:>9.1f} {c.sample.rps * n:>9.1f}"
            f" {result.ratios[-1]:>6.3f} {_latencies(b.sample):>18} {_latencies(c.sample):>20}"
            f" {b.server_us:>10.0f}/{c.server_us:<8.0f}{flag}"
        )
    for role, name in ((0, "B"), (1, "C")):
        rps, p50, p95, p99 = (
            result.median(role, attrgetter(m)) for m in ("rps", "p50_ms", "p95_ms", "p99_ms")
        )
        cpu = statistics.median(pair[role].server_us for pair in result.pairs)
        rate = f"{rps:.1f} req/s" + (f" = {rps * n:.0f} {work.unit}/s" if n != 1 else "")
        print(
            f"  median {name}: {rate}, p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms,"
            f" server CPU {cpu:.0f} us/req"
        )
    print(f"  server CPU per request, C/B of req/server-CPU-s: {_spread(result.cpu_ratios)}")
    print(f"  database CPU per request, C/B of req/db-CPU-s: {_spread(result.db_cpu_ratios)}")
    if work.latency:
        result.latency = latency_pair(bench, work)
        print(f"  {latency_verdict(work, result.latency[1].sample)}")
    if work.goal is None:
        verdict = "no goal" if result.valid else "INVALID"
        print(f"{work.key} ratio C/B: {_spread(result.ratios)}: {verdict}")
    else:
        verdict = "PASS" if result.passed else "FAIL" if result.valid else "INVALID"
        print(f"{work.key} ratio C/B: {_spread(result.ratios)} goal >= {work.goal:.2f}: {verdict}")
    return result


def growth_baseline(bench: Bench, data: Dataset) -> tuple[Trial, Trial]:
    """W2 (patient + code) at one connection on the smaller dataset."""
    work = searches(data)[0]
    print(f"\nW2 growth baseline: one connection on {data.resources:,} resources")
    return latency_pair(bench, work)


def growth_report(small: Dataset, large: Dataset, before: Result, after: Result) -> dict[str, Any]:
    assert before.latency and after.latency
    out: dict[str, Any] = {"resources": [small.resources, large.resources]}
    print(f"\nW2 growth {small.resources:,} -> {large.resources:,} resources, one connection:")
    for role, name in ((1, "C"), (0, "B")):
        x, y = before.latency[role].sample, after.latency[role].sample
        figures = {q: (getattr(x, f"{q}_ms"), getattr(y, f"{q}_ms")) for q in ("p50", "p95")}
        out[name] = {
            q: {"ms": v, "growth": v[1] / v[0] if v[0] else None} for q, v in figures.items()
        }
        print(
            f"w2 growth {name}: "
            + ", ".join(
                f"{q} {a:.2f} -> {b:.2f} ms (x{b / a:.2f})" for q, (a, b) in figures.items()
            )
        )
    return out


# -- the run ----------------------------------------------------------------------------------


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
    results: list[Result] = []
    growth: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="phr-bench-") as tmp:
        work_dir = Path(tmp)
        small = large = None
        growth_wanted = "w2" in config.workloads and not config.quick
        if DATASET_WORKLOADS & set(config.workloads):
            sizes = list(config.sets) if growth_wanted else [config.sets[1]]
            *smaller, large = dataset.prepare(sizes, config.rebuild, server_pin, work_dir)
            small = smaller[0] if smaller else None
        load = LoadGenerator("127.0.0.1", 0, work_dir, config.connections, load_pin)
        print(f"load generator: {load.tool}, {config.connections} connections; pinning: {pin_note}")
        print(
            f"{config.pairs} B/C pairs of {config.duration} s trials"
            f" (+{config.warmup} s warm-up each)"
        )
        before: tuple[Trial, Trial] | None = None
        if small is not None:
            with serving(
                small.db_dir, work_dir / "server.log", server_pin, config.retry_writes
            ) as (db, server):
                load.port = server.port
                before = growth_baseline(Bench(config, load, server, db), small)
            shutil.rmtree(small.db_dir)
        db_dir = large.db_dir if large is not None else work_dir / "db"
        with serving(db_dir, work_dir / "server.log", server_pin, config.retry_writes) as (
            db,
            server,
        ):
            load.port = server.port
            bench = Bench(config, load, server, db)
            for key in config.workloads:
                for work in workloads(key, server, config, large):
                    results.append(run_workload(bench, work))
        if before is not None and small is not None and large is not None:
            w2 = next(r for r in results if r.workload.key == "w2")
            growth = growth_report(small, large, Result(w2.workload, latency=before), w2)
    report = {
        "started": started.isoformat(),
        "command": ["python", "-m", "bench", *argv],
        "git": _git_revision(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_generator": load.tool,
        "pinning": pin_note,
        "config": asdict(config),
        "datasets": [d.resources for d in (small, large) if d is not None],
        "w2_growth": growth,
        "workloads": {r.workload.key: r.summary() for r in results},
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults: {out}")
    return 0 if all(r.valid for r in results) else 1
