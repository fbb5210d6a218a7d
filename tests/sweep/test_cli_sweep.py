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


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_read_commands_on_a_folder_that_is_not_a_sweep_write_nothing(tmp_path):
    # A folder with some unrelated content, and the results folder of a (would-be) sweep:
    # neither is a sweep folder, and every read command says so without writing into it.
    other = tmp_path / "notes"
    other.mkdir()
    (other / "readme.txt").write_text("not a sweep\n")
    (other / "results").mkdir()
    before = _tree(tmp_path)
    for args in (["ensemble", "build", str(other), "-o", str(tmp_path / "out" / "ENSEMBLE.json")],
                 ["sweep", "results", str(other)], ["sweep", "results", str(other / "results")],
                 ["sweep", "results", str(other), "--refresh"],
                 ["export", str(other), "--trial", "t00000", "-o", str(tmp_path / "bundle")]):
        result = _skelray(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "is not a skelray sweep folder" in result.stderr and "sweep.yaml" in result.stderr, args
        assert "Traceback" not in result.stderr
        assert _tree(tmp_path) == before, args


def test_export_help_says_a_sweep_folder_needs_trial(tmp_path):
    result = _skelray("export", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "needs --trial" in " ".join(result.stdout.split())
