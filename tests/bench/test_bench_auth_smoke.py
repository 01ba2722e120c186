"""`python -m bench.auth --quick` runs end to end: database, server, the bare auth routes, the
single-use pools (codes, refresh tokens, access tokens, client assertions), wrk, every ratio.

No timing assertions: a 2-core CI box is too noisy for them (docs/benchmarks-auth.md).
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.bench.quick import run_quick

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
    output = run_quick("bench.auth", 300)
    for key in RATIOS:
        assert re.search(
            rf"^{key} ratio C/B: median \d+\.\d+ \(min \d+\.\d+, max \d+\.\d+\) goal >= 0\.\d+: ",
            output,
            re.MULTILINE,
        ), output
    assert re.search(r"^results: .*bench/results/auth-\d{8}T\d{6}Z\.json", output, re.MULTILINE)
