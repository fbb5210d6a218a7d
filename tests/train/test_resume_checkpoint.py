"""Which checkpoint a restored trial resumes from: the newest its own result.json names."""

from __future__ import annotations

import json
from pathlib import Path

from ray import tune

from skelray.train.trial import latest_reported_checkpoint


def _trial(tmp_path: Path, lines: list[str], checkpoints: int = 2) -> Path:
    trial = tmp_path / "t00000"
    for i in range(checkpoints):
        (trial / f"checkpoint_{i:06d}").mkdir(parents=True)
    (trial / "result.json").write_text("".join(line + "\n" for line in lines))
    return trial


def _line(epoch: int, checkpoint: str | None) -> str:
    return json.dumps({"epoch": epoch, "checkpoint_dir_name": checkpoint})


def test_a_driver_killed_after_the_last_report_resumes_the_trial_from_its_last_checkpoint(tmp_path) -> None:
    # Tune's experiment state knew only the first checkpoint; the trial had reported both.
    trial = _trial(tmp_path, [_line(1, "checkpoint_000000"), _line(2, "checkpoint_000001")])
    given = tune.Checkpoint.from_directory(str(trial / "checkpoint_000000"))
    got = latest_reported_checkpoint(given)
    assert Path(got.path) == trial / "checkpoint_000001"


def test_the_checkpoint_tune_gives_is_kept_when_it_is_the_newest(tmp_path) -> None:
    trial = _trial(tmp_path, [_line(1, "checkpoint_000000"), _line(2, "checkpoint_000001")])
    given = tune.Checkpoint.from_directory(str(trial / "checkpoint_000001"))
    assert latest_reported_checkpoint(given) is given


def test_a_line_cut_by_the_kill_and_a_report_without_checkpoint_are_ignored(tmp_path) -> None:
    trial = _trial(tmp_path, [_line(1, "checkpoint_000000"), _line(2, None), '{"epoch": 3, "checkp'],
                   checkpoints=3)
    given = tune.Checkpoint.from_directory(str(trial / "checkpoint_000000"))
    assert latest_reported_checkpoint(given) is given  # checkpoint_000002 was never reported


def test_without_a_result_file_the_given_checkpoint_is_used(tmp_path) -> None:
    (tmp_path / "t00000" / "checkpoint_000000").mkdir(parents=True)
    given = tune.Checkpoint.from_directory(str(tmp_path / "t00000" / "checkpoint_000000"))
    assert latest_reported_checkpoint(given) is given
