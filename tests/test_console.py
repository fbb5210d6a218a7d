"""Command output that is not a terminal (a file, a pipe, a CI log) is not cut to 80 columns."""

from __future__ import annotations

import io

from rich.table import Table

from skelray.console import make_console


def _long_table() -> tuple[Table, list[str]]:
    cells = [f"run-0/t{i:05d}-pa_count={i},stream=j,sparsity=0.{i}  2.44e-05" for i in range(10)]
    table = Table(title="members")
    for i in range(len(cells)):
        table.add_column(f"column {i}")
    table.add_row(*cells)
    return table, cells


def test_a_long_table_is_not_cut_when_output_is_captured(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # as tools pass on to the processes they start
    out = io.StringIO()
    table, cells = _long_table()
    make_console(file=out).print(table)
    text = out.getvalue()
    assert all(cell in text for cell in cells), text
    assert "…" not in text


def test_a_terminal_and_an_explicit_width_are_respected():
    out = io.StringIO()
    table, _ = _long_table()
    make_console(file=out, width=100).print(table)
    assert max(len(line) for line in out.getvalue().splitlines()) <= 100
    assert make_console(file=io.StringIO(), force_terminal=True, width=90).width == 90
