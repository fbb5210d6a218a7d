"""The training-step benchmark runs, and its direct-ops copy computes the same logits."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_training_benchmark_quick_run_compares_equal_models() -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "bench_train.py"), "--quick", "--pa-counts", "1", "3"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"│\s+(\d)\s+│\s+(\d+)\s+│\s+(\d+)\s+│\s+([\d.]+)x\s+│\s+([\d.e+-]+)\s+│", out.stdout)
    assert [r[0] for r in rows] == ["1", "3"], out.stdout
    for _, built, direct, ratio, diff in rows:
        assert int(built) > 0 and int(direct) > 0
        assert abs(float(ratio) - int(direct) / int(built)) < 0.06  # the ratio is of the two timings shown
        assert float(diff) <= 1e-5  # the copy with AvgPool2d and per-matrix products is the same model
