"""``skelray models list`` and ``skelray models info``."""

from __future__ import annotations

from typer.testing import CliRunner

from skelray.cli import app
from skelray.errors import ConfigError
from skelray.models import list_models

runner = CliRunner()


def test_models_list_shows_every_registered_model() -> None:
    result = runner.invoke(app, ["models", "list"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in list_models():
        assert name in result.output
    assert "3,098,832" in result.output  # stgcn's default size


def test_models_info_prints_params_macs_and_fusability() -> None:
    result = runner.invoke(app, ["models", "info", "stgcn", "--layout", "ntu25", "--frames", "100",
                                 "--persons", "2", "--num-classes", "60"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "3,098,832" in result.output
    assert "5.698" in result.output and "2.849" in result.output  # GMACs per clip and per person-clip
    assert "fusable: yes" in result.output


def test_models_info_fused_shows_the_smaller_inference_form() -> None:
    result = runner.invoke(app, ["models", "info", "hpigcn_rp", "--layout", "kinect_v1_20", "--frames", "16",
                                 "--persons", "1", "--fused", "--opt", "pa_count=2"], terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines()
            if line.split()[1:2] in (["training"], ["fused"])}
    params = {form: int(line.split()[3].replace(",", "")) for form, line in rows.items()}
    assert params["fused"] < params["training"]


def test_models_info_unknown_model_is_a_config_error_with_a_suggestion() -> None:
    result = runner.invoke(app, ["models", "info", "hpigcn_pr"])
    assert isinstance(result.exception, ConfigError)
    assert "did you mean 'hpigcn_rp'" in str(result.exception)
