"""benchmarks/gpu_check.py without a GPU: it says so, runs the same steps small on the CPU and
exits 0. The default run takes the quick steps; the whole dry run (with its sweep) is slow."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False,
                          env={**os.environ, "COLUMNS": "250"})


def test_dry_run_trains_and_times_inference_on_the_cpu() -> None:
    out = _run("--skip", "tests,sweep,serve", timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    if not torch.cuda.is_available():
        assert "No CUDA GPU here" in out.stdout
    assert "the CPU (dry run)" in out.stdout
    samples = re.search(r"([\d,]+) samples/s; (?:GPU|model) busy (\d+)%, input pipeline (\d+)% of wall", out.stdout)
    assert samples and int(samples[1].replace(",", "")) > 0, out.stdout
    infer = re.search(r"fp32 ([\d.]+) ms, bf16 ([\d.]+) ms", out.stdout)
    assert infer and float(infer[1]) > 0 and float(infer[2]) > 0, out.stdout
    assert "paper: 33 ms" in out.stdout


def test_an_unknown_step_is_refused_by_name() -> None:
    out = _run("--skip", "trian", timeout=120)
    assert out.returncode == 2 and "trian" in out.stderr and "train" in out.stderr


@pytest.mark.slow
def test_whole_dry_run_schedules_four_trials_on_one_logical_gpu() -> None:
    out = _run(timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    together = re.search(r"all (\d) running at once for (\d+) s", out.stdout)
    assert together and together[1] == "4" and int(together[2]) > 0, out.stdout
    assert re.search(r"float32: max diff [\d.e+-]+, top-1 same", out.stdout), out.stdout
    assert "pytest -m gpu" in out.stdout
