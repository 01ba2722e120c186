"""Running a benchmark's `--quick` mode as a subprocess, for the smoke tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_quick(module: str, timeout: int) -> str:
    """`python -m MODULE --quick`: its output, after asserting it exited 0 in time."""
    with subprocess.Popen(
        [sys.executable, "-m", module, "--quick"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as bench:
        try:
            output, _ = bench.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            bench.terminate()  # the bench stops its server and database on SIGTERM
            output, _ = bench.communicate(timeout=60)
            pytest.fail(f"python -m {module} --quick took over {timeout} s:\n{output}")
    assert bench.returncode == 0, output
    return output
