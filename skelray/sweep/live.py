"""A live view of a running sweep: trial counts by state, the best so far, elapsed time.

On a terminal it redraws a rich table in place. Elsewhere (a log file, CI) it prints a line
per epoch a trial reports (trial, epoch, the sweep's metric, validation top-1, training loss,
elapsed time) and one when a trial finishes or fails, so a log shows progress from the first
epoch on instead of nothing until the first trial ends.
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.table import Table

from skelray import record
from skelray.console import make_console


class LiveView(Callback):
    def __init__(self, name: str, metric: str, mode: str, console: Console | None = None) -> None:
        self.name, self.metric, self.mode = name, metric, mode
        self.console = console or make_console()
        self.started = time.monotonic()
        self.best: tuple[float, str] | None = None
        self.status: dict[str, str] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self._live: Live | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks into the experiment state; a console and a live display hold
        # locks and a terminal, so they are left out and made anew after a restore.
        state = dict(self.__dict__)
        state["console"], state["_live"] = None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.console = make_console()

    # -- Tune hooks ---------------------------------------------------------------------------
    def setup(self, **info: Any) -> None:
        if self.console.is_terminal:
            self._live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
            self._live.start()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._sync(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.last[str(trial)] = result
        value = result.get(self.metric)
        if value is not None and (self.best is None or
                                  (value > self.best[0] if self.mode == "max" else value < self.best[0])):
            self.best = (value, str(trial))
        self._sync(trials)
        if self._live is None:
            self.console.print(self._epoch_line(trial, result), highlight=False)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._sync(trials)
        if self._live is None:
            res = self.last.get(str(trial), {})
            self.console.print(f"[{self._elapsed()}] done   {trial}  epochs={res.get('epoch')}  "
                               f"{self.metric}={_fmt(res.get(self.metric))}  {self._counts_text()}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._sync(trials)
        if self._live is None:
            self.console.print(f"[{self._elapsed()}] failed {trial}  {self._counts_text()}")

    def on_experiment_end(self, trials, **info) -> None:
        self._sync(trials)
        if self._live is not None:
            self._live.stop()
            self._live = None

    # -- rendering ----------------------------------------------------------------------------
    def _sync(self, trials) -> None:
        self.status = {str(t): t.status for t in trials}
        if self._live is not None:
            self._live.update(self._render())

    def _epoch_line(self, trial, result: dict[str, Any]) -> str:
        total = (getattr(trial, "config", None) or {}).get("train", {}).get("epochs")
        epoch = f"{result.get(record.EPOCH)}/{total}" if total else str(result.get(record.EPOCH))
        keys = dict.fromkeys((self.metric, record.VAL_TOP1, record.TRAIN_LOSS))  # ordered, no repeats
        metrics = "  ".join(f"{k}={_fmt(result.get(k))}" for k in keys if result.get(k) is not None)
        return f"[{self._elapsed()}] epoch  {trial}  {epoch}  {metrics}"

    def _elapsed(self) -> str:
        s = int(time.monotonic() - self.started)
        return f"{s // 60:02d}:{s % 60:02d}"

    def _counts(self) -> dict[str, int]:
        counts = {"PENDING": 0, "RUNNING": 0, "TERMINATED": 0, "ERROR": 0, "PAUSED": 0}
        for s in self.status.values():
            counts[s] = counts.get(s, 0) + 1
        return counts

    def _counts_text(self) -> str:
        c = self._counts()
        return (f"pending {c['PENDING'] + c['PAUSED']} running {c['RUNNING']} done {c['TERMINATED']} "
                f"errored {c['ERROR']}")

    def _shown(self, limit: int = 12) -> list[tuple[str, str]]:
        """Running trials first, then the best finished ones: a big sweep stays one screen."""
        running = sorted((n, s) for n, s in self.status.items() if s == "RUNNING")
        sign = -1 if self.mode == "max" else 1

        def score(item: tuple[str, str]) -> float:
            value = self.last.get(item[0], {}).get(self.metric)
            return sign * value if isinstance(value, (int, float)) else float("inf")

        rest = sorted(((n, s) for n, s in self.status.items() if s != "RUNNING"), key=score)
        return (running + rest)[:max(limit, len(running))]

    def _render(self) -> Table:
        table = Table(title=f"sweep {self.name}  {self._elapsed()}  {self._counts_text()}", title_justify="left")
        for col in ("trial", "state", "epoch", self.metric, "latency b1 (ms)"):
            table.add_column(col)
        for name, state in self._shown():
            res = self.last.get(name, {})
            table.add_row(name, state, str(res.get("epoch", "")), _fmt(res.get(self.metric)),
                          _fmt(res.get(record.latency_key(1))))
        if self.best:
            table.caption = f"best so far: {self.best[1]}  {self.metric}={self.best[0]:.4f}"
        return table


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("" if value is None else str(value))
