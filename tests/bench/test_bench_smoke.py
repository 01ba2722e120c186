"""`python -m bench --quick` runs end to end: database, server, seeding, the cached Synthea
datasets (built on first use), wrk or the Python client, every workload.

No timing assertions: a 2-core CI box is too noisy for them (docs/benchmarks.md).
"""

from __future__ import annotations

import re

import pytest

from tests.bench.quick import run_quick


@pytest.mark.slow
def test_quick_bench_reports_a_ratio_per_workload() -> None:
    output = run_quick("bench", 180)
    for workload in ("w1", "w2", "w2-variant", "w3", "w3-variant", "w4", "w4-variant", "w5"):
        assert re.search(rf"^{workload} ratio C/B: median \d+\.\d+ ", output, re.MULTILINE), output
