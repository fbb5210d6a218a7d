"""The registry: names, options, errors a user can cause, and adding an architecture."""

from __future__ import annotations

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
