"""The load generator: closed model, N keep-alive HTTP/1.1 connections, each sending back to back.

`wrk` (Debian package `wrk`) is used when it is on PATH: native, one thread, far cheaper per request
than the Python server it measures. Without it, a lean asyncio raw-socket client runs in a separate
process (`python -m bench.load SPEC`); it costs more CPU per request, so prefer wrk (see
docs/benchmarks.md). Both print the same `BENCH_RESULT` line, parsed here.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
SEPARATOR = b"\x1e"  # between the bodies of a body file
_RESULT = re.compile(r"^BENCH_RESULT (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Target:
    """What one trial sends: `method` on a random one of `paths`, with `body` if given (or a
    random one of `bodies`)."""

    name: str
    method: str
    paths: tuple[str, ...]
    body: bytes | None = None
    content_type: str = "application/fhir+json"
    headers: tuple[tuple[str, str], ...] = ()  # e.g. the bearer token (set per trial)
    bodies: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Sample:
    """One measured trial."""

    requests: int
    seconds: float
    errors: int  # connect/read/write/timeout
    status_errors: int  # responses with status >= 400
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_rate(self) -> float:
        return (self.errors + self.status_errors) / max(self.requests, 1)


def parse_result(output: str) -> Sample:
    match = _RESULT.search(output)
    if match is None:
        raise RuntimeError(f"the load generator printed no result:\n{output[-2000:]}")
    fields = dict(item.split("=", 1) for item in match.group(1).split())
    return Sample(
        requests=int(fields["requests"]),
        seconds=int(fields["duration_us"]) / 1e6,
        errors=int(fields["errors"]),
        status_errors=int(fields["status_errors"]),
        p50_ms=float(fields["p50_us"]) / 1000,
        p95_ms=float(fields["p95_us"]) / 1000,
        p99_ms=float(fields["p99_us"]) / 1000,
    )


class LoadGenerator:
    """Runs trials against host:port from `workdir`, prefixed by `pin` (e.g. `taskset -c 0`)."""

    def __init__(
        self, host: str, port: int, workdir: Path, connections: int, pin: list[str]
    ) -> None:
        self.host, self.port, self.workdir = host, port, workdir
        self.connections, self.pin = connections, pin
        self.tool = "wrk" if shutil.which("wrk") else "python"
        # A private copy: the run keeps one script even if the working tree changes meanwhile.
        self.script = Path(shutil.copy(WRK_SCRIPT, workdir / WRK_SCRIPT.name))

    def _files(self, target: Target) -> tuple[Path, Path | None, Path]:
        paths = self.workdir / f"{target.name}.paths"
        paths.write_text("\n".join(target.paths) + "\n")
        body = None
        if target.body is not None or target.bodies:
            # \x1e (record separator) never appears in JSON text (controls are escaped there)
            body = self.workdir / f"{target.name}.body"
            body.write_bytes(SEPARATOR.join(target.bodies or (target.body or b"",)))
        headers = self.workdir / f"{target.name}.headers"
        headers.write_text("".join(f"{name}: {value}\n" for name, value in target.headers))
        return paths, body, headers

    def command(self, target: Target, seconds: int, connections: int) -> list[str]:
        paths, body, headers = self._files(target)
        if self.tool == "wrk":
            url = f"http://{self.host}:{self.port}"
            args = [target.method, str(paths), str(headers)]
            if body is not None:
                args += [str(body), target.content_type]
            opts = ["-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
            return [*self.pin, "wrk", *opts, "-s", str(self.script), url, "--", *args]
        spec = {
            "host": self.host,
            "port": self.port,
            "method": target.method,
            "paths": str(paths),
            "body": str(body) if body else None,
            "content_type": target.content_type,
            "headers": str(headers),
            "seconds": seconds,
            "connections": connections,
        }
        spec_file = self.workdir / f"{target.name}.spec.json"
        spec_file.write_text(json.dumps(spec))
        return [*self.pin, sys.executable, "-m", "bench.load", str(spec_file)]

    def run(self, target: Target, seconds: int, connections: int | None = None) -> Sample:
        """A closed-model trial: `connections` (default: the generator's) send back to back."""
        out = subprocess.run(
            self.command(target, seconds, connections or self.connections),
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        return parse_result(out.stdout)


def drain(url: str, target: Target, connections: int, seconds: int) -> Sample:
    """A closed-model trial that finishes every request it starts, for requests that take seconds
    (W4 bundles): `connections` threads send back to back until `seconds` have passed, and the
    trial lasts until the last answer, where wrk would drop the requests still in flight."""
    latencies: list[float] = []
    failures = {"errors": 0, "status": 0}
    lock = threading.Lock()
    headers = {"Content-Type": target.content_type, **dict(target.headers)}
    limits = httpx.Limits(max_connections=connections)
    with httpx.Client(base_url=url, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + seconds

        def worker(n: int) -> None:
            rng = random.Random(n)
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    response = client.request(
                        target.method,
                        rng.choice(target.paths),
                        content=rng.choice(target.bodies) if target.bodies else target.body,
                        headers=headers,
                    )
                except httpx.HTTPError:
                    with lock:
                        failures["errors"] += 1
                    continue
                with lock:
                    latencies.append(time.perf_counter() - sent)
                    failures["status"] += response.status_code >= 400

        with ThreadPoolExecutor(connections) as pool:
            list(pool.map(worker, range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return Sample(
        len(latencies),
        elapsed,
        failures["errors"],
        failures["status"],
        *(_percentile(latencies, q) * 1000 for q in (0.5, 0.95, 0.99)),
    )


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[int(q * (len(ordered) - 1))] if ordered else 0.0


# -- the Python fallback client -------------------------------------------------------------------


async def _connection(
    host: str, port: int, requests: list[bytes], deadline: float, latencies: list[float]
) -> tuple[int, int]:
    """Send random requests back to back until the deadline; (transport errors, status errors)."""
    errors = status_errors = 0
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(random.choice(requests))
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError):
                errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            latencies.append(time.perf_counter() - started)
            if int(head[9:12]) >= 400:
                status_errors += 1
    finally:
        writer.close()
    return errors, status_errors


def _requests(spec: dict[str, Any]) -> list[bytes]:
    bodies = Path(spec["body"]).read_bytes().split(SEPARATOR) if spec["body"] else [b""]
    head = f"Host: {spec['host']}:{spec['port']}\r\n"
    head += "".join(f"{line}\r\n" for line in Path(spec["headers"]).read_text().splitlines())
    paths = Path(spec["paths"]).read_text().split()
    out = []
    for n in range(max(len(paths), len(bodies))):  # as wrk.lua: every path and every body
        path, body = paths[n % len(paths)], bodies[n % len(bodies)]
        extra = head
        if spec["body"]:
            extra += f"Content-Type: {spec['content_type']}\r\nContent-Length: {len(body)}\r\n"
        out.append(f"{spec['method']} {path} HTTP/1.1\r\n{extra}\r\n".encode() + body)
    return out


async def _drive(spec: dict[str, Any], requests: list[bytes]) -> str:
    host, port = spec["host"], spec["port"]
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + spec["seconds"]
    results = await asyncio.gather(
        *(
            _connection(host, port, requests, deadline, latencies)
            for _ in range(spec["connections"])
        )
    )
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return _percentile(latencies, q) * 1e6

    return (
        f"BENCH_RESULT requests={len(latencies)} duration_us={int(elapsed * 1e6)}"
        f" errors={sum(r[0] for r in results)} status_errors={sum(r[1] for r in results)}"
        f" p50_us={pct(0.5):.1f} p95_us={pct(0.95):.1f} p99_us={pct(0.99):.1f}"
    )


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    drive = _drive(spec, _requests(spec))
    try:
        import uvloop  # installed with uvicorn[standard]
    except ImportError:
        print(asyncio.run(drive))
        return
    print(uvloop.run(drive))


if __name__ == "__main__":
    main()
