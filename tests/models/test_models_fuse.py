"""``fuse``: the inference form equals the trained model, and is single-branch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from skelray.data import get_layout
from skelray.models import create_model, fuse, is_fusable, list_models, profile
from skelray.models._layers import DataBN
from skelray.models._rep import PAGraphConv, TemporalMean


def _trained(name: str, x: torch.Tensor, layout: str, **kwargs) -> nn.Module:
    """A model after a few SGD steps on ``x`` (so BN running statistics are not the defaults),
    with every parameter then nudged (so biases that training leaves at zero, such as the
    serial branches' 1x1 biases that BN cancels, are non-zero and their border handling is
    exercised), and the head scaled so logits are of order 1-10, not tiny."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, layout=layout, num_persons=x.shape[1], **kwargs).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    target = torch.arange(x.shape[0]) % 10
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.eval()
        scale = 4.0 / model(x).std()
        model.head.weight.mul_(scale)
        model.head.bias.mul_(scale)
    return model


def _assert_equal_logits(model: nn.Module, fused: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        want, got = model(x), fused(x)
        if want.abs().max() < 1.0:
            # Scale both heads alike so these logits are of order 1-10: a tolerance of 1e-4 on
            # tiny logits would prove nothing. The head is linear, so this scales the gap too.
            scale = 4.0 / want.abs().max()
            for m in (model, fused):
                m.head.weight.mul_(scale)
                m.head.bias.mul_(scale)
            want, got = model(x), fused(x)
    diff = (want - got).abs().max().item()
    assert diff <= 1e-4, f"fused logits differ by {diff:.2e} (logits up to {want.abs().max():.1f})"


@pytest.mark.parametrize("name", ["stgcn", "hpigcn_rp"])
def test_a_narrow_model_fuses_to_the_same_logits(name: str) -> None:
    torch.manual_seed(2)
    x = torch.randn(4, 1, 16, 20, 3)
    model = _trained(name, x, "kinect_v1_20", width=0.5)
    _assert_equal_logits(model, fuse(model), torch.randn(3, 1, 16, 20, 3))


@pytest.mark.parametrize("name", list_models())
def test_fused_logits_equal_training_logits_on_random_input(name: str) -> None:
    torch.manual_seed(1)
    x = torch.randn(4, 2, 16, 25, 3)
    model = _trained(name, x, "ntu25")
    fused = fuse(model)
    _assert_equal_logits(model, fused, torch.randn(3, 2, 16, 25, 3))
    # Clips of one to three frames are all border: a wrong padding rule shows up here first.
    for t in (1, 2, 3):
        _assert_equal_logits(model, fused, 3 * torch.randn(2, 2, t, 25, 3))
    # In float64 the gap is rounding only: the folding is algebraically exact.
    x64 = torch.randn(2, 2, 9, 25, 3, dtype=torch.float64)
    with torch.no_grad():
        gap = (model.double()(x64) - fuse(model)(x64)).abs().max().item()
    assert gap <= 1e-9, f"float64 fused logits differ by {gap:.2e}"


@pytest.mark.ucla
@pytest.mark.parametrize("name", list_models())
def test_fused_logits_equal_training_logits_on_nw_ucla(name: str, ucla_clips: list[np.ndarray],
                                                       to_batch) -> None:
    layout = get_layout("kinect_v1_20")
    x = to_batch(ucla_clips, frames=24, center=layout.center)
    model = _trained(name, x[:6], layout.name)
    _assert_equal_logits(model, fuse(model), x)


@pytest.mark.parametrize("name", list_models())
def test_fused_model_keeps_batchnorm_only_at_the_input(name: str) -> None:
    model = create_model(name, num_classes=10)
    assert is_fusable(model)
    fused = fuse(model)
    allowed = {id(m) for d in fused.modules() if isinstance(d, DataBN) for m in d.modules()}
    left = [n for n, m in fused.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in allowed]
    assert not left, f"BN left after fusing: {left}"
    assert not fused.training


@pytest.mark.parametrize("name", ["hpigcn_rp", "hpigcn_op"])
@pytest.mark.parametrize("kernel", [5, 9])
def test_hpigcn_fuses_to_single_branch_blocks(name: str, kernel: int) -> None:
    model = create_model(name, num_classes=10, tcn_kernel=kernel, pa_count=3)
    fused = fuse(model)
    for block in fused.blocks:
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in block.modules())
        assert isinstance(block.tcn, nn.Conv2d) and block.tcn.kernel_size == (kernel, 1)
        assert block.gcn.pa.shape[0] == 1  # the PA matrices summed into one
    shape = (1, 2, 32, 25, 3)
    params, macs = profile(model, shape)
    fused_params, fused_macs = profile(fused, shape)
    assert fused_params < 0.6 * params and fused_macs < 0.6 * macs


def test_fusing_leaves_the_model_alone_and_is_idempotent() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 2, 12, 25, 3)
    model = _trained("hpigcn_rp", x, "ntu25", pa_count=2).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse(model)
    assert model.training and len(model.blocks[0].tcn.branches) == 4
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    again = fuse(fused)
    with torch.no_grad():
        torch.testing.assert_close(again(x), fused(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kernel,stride,frames", [(3, 1, 34), (3, 2, 34), (3, 2, 9), (5, 2, 16), (3, 1, 3)])
def test_temporal_mean_is_avg_pool_forward_and_backward(kernel: int, stride: int, frames: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, frames, 5, requires_grad=True)
    want = nn.AvgPool2d((kernel, 1), (stride, 1))(x)
    (want_grad,) = torch.autograd.grad((want * torch.arange(want.numel()).view_as(want)).sum(), x)
    got = TemporalMean(kernel, stride)(x)
    (got_grad,) = torch.autograd.grad((got * torch.arange(got.numel()).view_as(got)).sum(), x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
    with pytest.raises(ValueError, match="fewer than the pool's 5"):
        TemporalMean(5)(torch.randn(1, 1, 4, 1))


@pytest.mark.parametrize("groups", [1, 2])
def test_graph_conv_trains_every_matrix_as_its_own_product(groups: int) -> None:
    """The forward multiplies by the sum of the PA matrices; outputs and each matrix's gradient
    are those of one product per matrix, summed (the paper's training form)."""
    torch.manual_seed(0)
    graph = torch.rand(1, 6, 6)
    conv = PAGraphConv(4, 8, graph, pa_count=3, groups=groups).train()
    x = torch.randn(2, 4, 5, 6)
    got = conv(x)
    got_grad = torch.autograd.grad(got.square().sum(), conv.pa)[0]
    h = conv.conv_in(x).view(2, groups, 8 // groups, 5, 6)
    y = sum(torch.einsum("ngctj,gij->ngcti", h, conv.pa[i]) for i in range(3))
    want = conv.conv_out(y.reshape(2, 8, 5, 6))
    want_grad = torch.autograd.grad(want.square().sum(), conv.pa)[0]
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
    assert not torch.allclose(conv.pa[0], conv.pa[1])  # distinct matrices, one shared gradient
