"""`skelray sweep run` with a bad sweep file: a clear error, exit code 2, nothing started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _skelray(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skelray.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_bad_sweep_file_fails_before_anything_starts(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\n"
        "data: {format: synthetic}\n"
        "model: {name: hpigcn_rp}\n"
        "train: {epocs: 3}\n"
        "search:\n"
        "  model.kwargs.pa_count: {grid: []}\n"
    )
    result = _skelray("sweep", "run", str(bad), "--storage", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2
    assert "train.epocs" in result.stderr and "did you mean 'epochs'" in result.stderr
    assert "search.model.kwargs.pa_count.grid" in result.stderr and "grid is empty" in result.stderr
    # Nothing was started or written: no sweep folder, no Ray session of ours.
    assert not (tmp_path / "runs").exists()
    assert "Traceback" not in result.stderr


def test_validate_counts_trials_of_a_shipped_sweep(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    result = _skelray("sweep", "validate", str(repo / "sweeps" / "demo.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4 trials" in result.stdout
