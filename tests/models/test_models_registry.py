"""The registry: names, options, errors a user can cause, adding an architecture, plug-ins."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from skelray.data import get_layout
from skelray.errors import ConfigError, DataError
from skelray.models import _registry, create_model, list_models, model_options, register_model


def test_the_zoo_registers_the_four_architectures() -> None:
    assert {"stgcn", "hpigcn_rp", "hpigcn_op", "esgn"} <= set(list_models())
    assert list_models("hpigcn*") == ["hpigcn_op", "hpigcn_rp"]


def test_unknown_model_name_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="unknown model 'stgnc'.*did you mean 'stgcn'"):
        create_model("stgnc")


def test_unknown_option_is_named_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="unknown option 'num_class'.*did you mean 'num_classes'"):
        create_model("hpigcn_rp", num_class=10)


@pytest.mark.parametrize(("name", "kwargs", "field"), [
    ("hpigcn_rp", {"tcn_kernel": 7}, "hpigcn_rp.tcn_kernel"),
    ("hpigcn_rp", {"input_embedding": "bone"}, "hpigcn_rp.input_embedding"),
    ("hpigcn_rp", {"pa_count": 0}, "hpigcn_rp.pa_count"),
    ("hpigcn_op", {"groups": 3}, "hpigcn_op.groups"),
    ("hpigcn_rp", {"width": 0}, "hpigcn_rp.width"),
    ("stgcn", {"width": "half"}, "stgcn.width"),
    ("stgcn", {"num_classes": 0}, "stgcn.num_classes"),
    ("esgn", {"dropout": 1.0}, "esgn.dropout"),
])
def test_bad_option_values_name_the_field(name: str, kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        create_model(name, **kwargs)


def test_model_options_lists_the_common_options() -> None:
    for name in list_models():
        options = model_options(name)
        for key in ("num_classes", "layout", "in_channels", "num_persons", "dropout"):
            assert key in options, (name, key)
        assert options["in_channels"] == 3 and options["num_persons"] == 2


def test_layout_may_be_a_layout_object() -> None:
    model = create_model("esgn", layout=get_layout("kinect_v1_20"), num_classes=5)
    assert model.num_joints == 20 and model(torch.zeros(2, 1, 4, 20, 3)).shape == (2, 5)


def test_input_with_the_wrong_joint_count_is_a_data_error() -> None:
    model = create_model("stgcn", layout="kinect_v1_20")
    with pytest.raises(DataError, match="25 joints.*'kinect_v1_20' has 20"):
        model(torch.zeros(1, 1, 4, 25, 3))


def test_a_new_architecture_registers_and_builds_by_name() -> None:
    class Tiny(nn.Module):
        def __init__(self, num_classes: int) -> None:
            super().__init__()
            self.head = nn.Linear(3, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(x.mean(dim=(1, 2, 3)))

    def tiny_test_net(num_classes: int = 4) -> nn.Module:
        return Tiny(num_classes)

    try:
        register_model(tiny_test_net)
        assert "tiny_test_net" in list_models()
        assert create_model("tiny_test_net", num_classes=7)(torch.zeros(2, 1, 3, 5, 3)).shape == (2, 7)
        with pytest.raises(ConfigError, match="registered already"):
            register_model(name="tiny_test_net")(lambda: Tiny(1))
    finally:
        _registry._entry_points.pop("tiny_test_net", None)


# -- plug-ins: models other packages declare under the ``skelray.models`` entry points ------------

PLUGIN = '''
from torch import nn

from skelray.models import register_model

LOADED = True


class Wrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def plain_plugin_net(num_classes: int = 3) -> nn.Module:
    """A plain function: registered under its entry point's name when first used."""
    return nn.Linear(4, num_classes)


@register_model(name="wrapping_plugin_net", delegate="inner")
def wrapping_plugin_net(inner: str = "stgcn", depth: int = 1, **inner_kwargs) -> nn.Module:
    from skelray.models import create_model

    return Wrapper(create_model(inner, **inner_kwargs))
'''


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    """An installed package 'skelray-test-plugin' (a module and its dist-info on sys.path) that
    declares three models: two that load, one whose module does not exist."""
    (tmp_path / "skelray_test_plugin.py").write_text(PLUGIN)
    info = tmp_path / "skelray_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: skelray-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[skelray.models]\n"
        "plain_plugin_net = skelray_test_plugin:plain_plugin_net\n"
        "wrapping_plugin_net = skelray_test_plugin:wrapping_plugin_net\n"
        "broken_plugin_net = skelray_test_plugin_missing:net\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _registry._plugins.cache_clear()
    yield
    for name in ("plain_plugin_net", "wrapping_plugin_net", "broken_plugin_net"):
        _registry._entry_points.pop(name, None)
    sys.modules.pop("skelray_test_plugin", None)
    _registry._plugins.cache_clear()


def test_a_plugin_is_listed_without_importing_it_and_imported_on_first_use(plugin_package) -> None:
    assert {"plain_plugin_net", "wrapping_plugin_net", "broken_plugin_net"} <= set(list_models())
    assert list_models("plain_plug*") == ["plain_plugin_net"]
    assert "skelray_test_plugin" not in sys.modules
    assert model_options("plain_plugin_net") == {"num_classes": 3, "mirror_tta": False}
    assert "skelray_test_plugin" in sys.modules
    assert create_model("plain_plugin_net", num_classes=5).out_features == 5
    with pytest.raises(ConfigError, match="unknown option 'num_class'.*did you mean 'num_classes'"):
        create_model("plain_plugin_net", num_class=5)


def test_a_plugin_that_wraps_another_model_takes_its_options(plugin_package) -> None:
    assert set(model_options("wrapping_plugin_net", inner="esgn")) == {
        "inner", "depth", "num_classes", "layout", "in_channels", "num_persons", "dropout", "frame_buckets",
        "mirror_tta"}
    assert "edge_importance" in model_options("wrapping_plugin_net")  # the default inner model, stgcn
    model = create_model("wrapping_plugin_net", inner="esgn", num_classes=6, frame_buckets=10)
    assert model.inner.frame_buckets == 10 and model.inner.num_classes == 6
    with pytest.raises(ConfigError, match="unknown option 'edge_importance' for model 'wrapping_plugin_net'"):
        create_model("wrapping_plugin_net", inner="esgn", edge_importance=False)


def test_a_plugin_that_fails_to_load_names_its_package(plugin_package) -> None:
    with pytest.raises(ConfigError, match=r"'broken_plugin_net' is declared by skelray-test-plugin as "
                                          r"'skelray_test_plugin_missing:net'.*ModuleNotFoundError"
                                          r".*reinstall skelray-test-plugin"):
        create_model("broken_plugin_net")


def test_skelray_declares_the_sparse_ensemble_as_a_plugin() -> None:
    # A fresh interpreter: the zoo lists it without importing skelray.sparsity (the layer above
    # it), and builds it by importing it on first use.
    code = ("import sys; from skelray.models import create_model, list_models\n"
            "assert 'sparse_ensemble' in list_models(), list_models()\n"
            "assert 'skelray.sparsity' not in sys.modules\n"
            "m = create_model('sparse_ensemble', backbone='esgn', levels=[0.5], layout='kinect_v1_20')\n"
            "assert type(m).__name__ == 'MultiLevelEnsemble'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_a_delegate_must_name_an_argument_with_a_default_and_kwargs_to_pass_on() -> None:
    def no_kwargs(inner: str = "stgcn") -> nn.Module:
        return nn.Identity()

    def no_default(inner: str, **kwargs) -> nn.Module:
        return nn.Identity()

    with pytest.raises(ConfigError, match=r"no \*\*kwargs"):
        register_model(no_kwargs, delegate="inner")
    with pytest.raises(ConfigError, match="no argument 'inner' with a default"):
        register_model(no_default, delegate="inner")
    with pytest.raises(ConfigError, match="no argument 'backbone' with a default"):
        register_model(no_default, delegate="backbone")
    assert "no_kwargs" not in list_models() and "no_default" not in list_models()
