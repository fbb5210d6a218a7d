"""The leaderboard and plots read per-config summaries when configs have replicates."""

from __future__ import annotations

import pyarrow as pa
from rich.console import Console

from skelray.sweep.report import _spread, leaderboard, plot, score_label


def _rows(seeds: int) -> list[dict]:
    rows = []
    for pa_count, base in ((1, 0.80), (3, 0.81), (5, 0.60)):
        for s in range(seeds):
            score = base + 0.01 * s
            rows.append({"trial_name": f"t{len(rows):05d}-pa_count={pa_count},seed={s}", "status": "TERMINATED",
                         "epochs_run": 2, "score": score, "best.val/top1": score, "best.test/top1": score - 0.05,
                         "params": 1000.0, "macs": 1e6, "latency_ms_b1": 2.0, "latency_ms_b64": 20.0,
                         "config.model.kwargs.pa_count": pa_count, "config.train.seed": s})
    return rows


def _render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_replicated_configs_get_a_config_leaderboard_with_ties() -> None:
    text = _render(leaderboard(pa.Table.from_pylist(_rows(3))))
    assert "leaderboard by configuration" in text and "± 95% interval" in text
    cells = [[c.strip() for c in ln.split("│")[1:-1]] for ln in text.splitlines() if ln.startswith("│")]
    assert [c[1] for c in cells] == ["3", "1", "5"]  # pa_count, ranked by mean score
    assert [c[6] for c in cells] == ["=", "=", ""]  # 1 and 3 overlap; 5 does not
    assert cells[0][3:6] == ["0.8200 ± 0.0248", "77.0% ± 2.5", "74.5%–79.5%"]  # 4.303 * 0.01 / sqrt(3)


def test_single_trials_keep_the_trial_leaderboard() -> None:
    text = _render(leaderboard(pa.Table.from_pylist(_rows(1))))
    assert text.lstrip().startswith("leaderboard") and "by configuration" not in text


def test_plots_are_written_for_replicated_configs(tmp_path) -> None:
    trials = pa.Table.from_pylist(_rows(3))
    epochs = pa.Table.from_pylist([{"trial_name": r["trial_name"], "epoch": e, "val/top1": 0.5, "test/top1": 0.4}
                                   for r in _rows(3) for e in (1, 2)])
    written = plot(trials, epochs, tmp_path, scope="last-5-avg")
    assert sorted(p.name for p in written) == ["accuracy_per_epoch.png", "accuracy_vs_latency.png",
                                               "accuracy_vs_params.png"]


def test_the_score_label_names_what_is_plotted() -> None:
    assert score_label("val/top1", "last-5-avg") == "val top-1, mean of the last 5 epochs"
    assert score_label("val/top1", "all") == "val top-1 at the best epoch"


def test_points_of_equal_cost_are_spread_apart_in_order() -> None:
    xs = _spread([10.0, 10.0, 10.0, 50.0])
    assert xs[0] < xs[1] < xs[2] and xs[3] == 50.0 and abs(xs[1] - 10.0) < 1e-9
    assert 9.6 < xs[0] < 10 < xs[2] < 10.4
