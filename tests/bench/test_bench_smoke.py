"""`python -m bench --quick` runs end to end: database, server, seeding, the cached Synthea
datasets (built on first use), wrk or the Python client, every workload.

No timing assertions: a 2-core CI box is too noisy for them (docs/benchmarks.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_bench_reports_a_ratio_per_workload() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as bench:
        try:
            output, _ = bench.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            bench.terminate()  # the bench stops its server and database on SIGTERM
            output, _ = bench.communicate(timeout=60)
            pytest.fail(f"python -m bench --quick took over 180 s:\n{output}")
    assert bench.returncode == 0, output
    for workload in ("w1", "w2", "w2-variant", "w3", "w4", "w5"):
        assert re.search(rf"^{workload} ratio C/B: median \d+\.\d+ ", output, re.MULTILINE), output
