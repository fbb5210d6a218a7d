"""benchmarks/bench_input.py runs and its two pipelines agree for equal draws."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_input_benchmark_quick_run_compares_equal_outputs() -> None:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_input.py"), "--quick"],
                         capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr[-2000:]
    rows = dict(re.findall(r"│\s+(per-clip|batched)\s+│\s+[\d.]+\s+│\s+([\d,]+)\s+│", out.stdout))
    assert set(rows) == {"per-clip", "batched"} and all(int(v.replace(",", "")) > 0 for v in rows.values())
    diff = re.search(r"max \|batched - per-clip\| for equal draws over \d+ clips: ([\d.e+-]+) "
                     r"\(generators left in the same state: True\)", out.stdout)
    assert diff and float(diff[1]) <= 1e-5, out.stdout
