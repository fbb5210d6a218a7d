"""The shared configuration: ``--set`` parsing, the trial sections, the sparsity schedule."""

from __future__ import annotations

import pytest

from skelray.config import SparsitySchedule, TrialConfig, parse_overrides
from skelray.errors import ConfigError, check_choice
from skelray.sweep import load_sweep


def test_parse_overrides_reads_values_as_yaml():
    assert parse_overrides(["train.epochs=3", "data.path=/d", "data.scale=[0.9, 1.1]", "name="]) == {
        "train.epochs": 3, "data.path": "/d", "data.scale": [0.9, 1.1], "name": ""}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["train.epochs"])


@pytest.mark.parametrize("item", ["x=[1,", "x={a: 1", "model.kwargs.pa_count=[3"])
def test_parse_overrides_reports_bad_yaml_as_a_config_error(item: str) -> None:
    key = item.partition("=")[0]
    with pytest.raises(ConfigError) as err:
        parse_overrides([item])
    assert "--set" in str(err.value) and key in str(err.value) and "quote" in str(err.value)


def test_every_sweep_command_reads_set_with_the_one_parser(tmp_path) -> None:
    from typer.testing import CliRunner

    from skelray.cli import app

    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: t\ndata: {format: synthetic}\nmodel: {name: stgcn}\n")
    for args in (["sweep", "validate", str(sweep)], ["k8s", "render", str(sweep)],
                 ["models", "info", "stgcn"]):
        flag = "--opt" if args[0] == "models" else "--set"
        result = CliRunner().invoke(app, [*args, flag, "x=[1,"])
        assert result.exit_code != 0
        text = result.output + str(result.exception or "")
        assert "not valid YAML" in text and "Traceback" not in result.output, (args, text)


def test_ctf_settings_can_be_set_from_a_sweep() -> None:
    spec = load_sweep("name: t\ndata: {format: synthetic}\nmodel: {name: stgcn, sparsity: {level: 0.9, "
                      "granularity: ctf, schedule: {budget_weight: 2.5, temperature: [2.0, 0.01]}}}\n")
    schedule = spec.trial_config().model.sparsity.schedule
    assert isinstance(schedule, SparsitySchedule)
    assert schedule.budget_weight == 2.5 and schedule.temperature == (2.0, 0.01)


def test_a_bad_schedule_reports_every_field_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load_sweep("name: t\ndata: {format: synthetic}\nmodel: {name: stgcn, sparsity: {level: 0.9, "
                   "schedule: {budget_weight: -1, temperature: [0.1, 1.0], kind: cosine}}}\n")
    text = str(err.value)
    for where in ("schedule.budget_weight", "schedule.temperature", "schedule.kind"):
        assert where in text, text


def test_trial_config_reports_all_its_errors() -> None:
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_tune({"data": {"format": "nope", "frames": 0}, "model": {"name": "x"},
                               "train": {"lr": -1}})
    text = str(err.value)
    assert "3 problems" in text and "data.format" in text and "data.frames" in text and "train.lr" in text


def test_check_choice_names_the_field_and_the_choices() -> None:
    assert check_choice(5, (5, 9), "m.tcn_kernel") == 5
    for bad in (7, True):
        with pytest.raises(ConfigError, match=r"m.tcn_kernel.*use one of 5, 9"):
            check_choice(bad, (5, 9), "m.tcn_kernel")


def test_a_layout_file_path_is_pinned_to_where_skelray_runs(tmp_path, monkeypatch) -> None:
    from skelray.config import DataSpec

    monkeypatch.chdir(tmp_path)
    # Trials load the data in Ray workers, whose working folder is another one.
    assert DataSpec(layout="layouts/my20.yaml").layout == str(tmp_path / "layouts" / "my20.yaml")
    assert DataSpec(layout="kinect_v1_20").layout == "kinect_v1_20"
