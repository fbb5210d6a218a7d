"""Mirror test-time augmentation (``mirror_tta``): a common option of every registered model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skelray.data import get_layout
from skelray.data.transforms import mirror_joints
from skelray.errors import ConfigError, LayoutError
from skelray.models import (
    _registry,
    create_model,
    fuse,
    is_fusable,
    list_models,
    model_options,
    register_model,
)


def _pair(name: str):
    """The same weights built with and without mirror_tta, in eval mode."""
    kwargs = dict(num_classes=5, layout="kinect_v1_20", num_persons=1, dropout=0.0)
    torch.manual_seed(0)
    plain = create_model(name, **kwargs).eval()
    tta = create_model(name, mirror_tta=True, **kwargs).eval()
    tta.load_state_dict(plain.state_dict())  # same keys: the option adds no weights
    return plain, tta


def _mirrored(x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(mirror_joints(x.numpy(), get_layout("kinect_v1_20").mirror()))


@pytest.mark.parametrize("name", list_models())
def test_mirror_tta_averages_the_logits_of_a_clip_and_its_mirror(name: str) -> None:
    assert model_options(name)["mirror_tta"] is False
    plain, tta = _pair(name)
    x = torch.randn(3, 1, 12, 20, 3)
    with torch.no_grad():
        expected = (plain(x) + plain(_mirrored(x))) / 2
        got = tta(x)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        # So the prediction cannot depend on which way the person faces.
        torch.testing.assert_close(tta(_mirrored(x)), got, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(plain(x), got, atol=1e-4)  # the mirror really is a different input
        if is_fusable(tta):
            fused = fuse(tta)
            assert fused.mirror_tta == tta.mirror_tta
            torch.testing.assert_close(fused(x), got, rtol=1e-4, atol=1e-4)
    # Training forwards are untouched: the augmentation for training is data.mirror.
    tta.train(), plain.train()
    torch.manual_seed(1)
    a = tta(x)
    torch.manual_seed(1)
    torch.testing.assert_close(a, plain(x))


def test_mirror_tta_errors_name_the_option() -> None:
    with pytest.raises(ConfigError, match="model.mirror_tta: must be true or false"):
        create_model("stgcn", mirror_tta="yes")
    with pytest.raises(LayoutError, match="hand21.*no left/right joint pairs"):
        create_model("stgcn", layout="hand21", mirror_tta=True)

    def tiny_mirror_net(num_classes: int = 4) -> nn.Module:
        return nn.Linear(3, num_classes)

    try:
        register_model(tiny_mirror_net)
        assert create_model("tiny_mirror_net", mirror_tta=False).out_features == 4
        with pytest.raises(ConfigError, match="not a skeleton model"):
            create_model("tiny_mirror_net", mirror_tta=True)
    finally:
        _registry._entry_points.pop("tiny_mirror_net", None)
