"""`python -m bench.auth --quick` runs end to end: database, server, the bare auth routes, the
single-use pools (codes, refresh tokens, access tokens, client assertions), wrk, every ratio.

No timing assertions: a 2-core CI box is too noisy for them (docs/benchmarks-auth.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RATIOS = (
    "w1-auth-patient",
    "w1-auth-system",
    "w1-read-patient",
    "w1-read-system",
    "w6-code",
    "w6-refresh",
    "w7-jwt",
    "w7-basic",
)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="bench.auth needs wrk")
def test_quick_auth_bench_reports_every_ratio() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "bench.auth", "--quick"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as bench:
        try:
            output, _ = bench.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            bench.terminate()  # the bench stops its server and database on SIGTERM
            output, _ = bench.communicate(timeout=60)
            pytest.fail(f"python -m bench.auth --quick took over 300 s:\n{output}")
    assert bench.returncode == 0, output
    for key in RATIOS:
        assert re.search(
            rf"^{key} ratio C/B: median \d+\.\d+ \(min \d+\.\d+, max \d+\.\d+\) goal >= 0\.\d+: ",
            output,
            re.MULTILINE,
        ), output
    assert re.search(r"^results: .*bench/results/auth-\d{8}T\d{6}Z\.json", output, re.MULTILINE)
