"""``compact``: the smaller dense model computes what the masked one does, costs less, fuses,
and cuts residual channels only where every summand is zero; a block type without a rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from skelray.errors import ConfigError
from skelray.models import _compact, compaction_rule, fuse, inference_form, profile, register_compaction
from skelray.models._layers import ConvBN
from skelray.sparsity import compact, is_sparse, report, sparsify
from skelray.sparsity._compact import convbn_zero, slice_convbn

SHAPE = (1, 1, 16, 20, 3)


def trained_sparse(model: nn.Module, x: torch.Tensor, sgd_steps, **config) -> nn.Module:
    """Sparsify, take a few steps (BN statistics move), nudge every weight and bias (so the
    zero-initialised BN shifts are not zero and their handling is exercised), and scale the
    head so logits are of order 1-10: a 1e-4 tolerance on tiny logits would prove nothing."""
    torch.manual_seed(0)
    model = sparsify(model, **config)
    sgd_steps(model, x, steps=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "score" not in name:
                p.add_(0.05 * torch.randn_like(p))
        model.eval()
        scale = 4.0 / model(x).abs().max()
        model.head.weight.mul_(scale)
        model.head.bias.mul_(scale)
    return model


def max_gap(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


@pytest.mark.parametrize("name", ["stgcn", "hpigcn_rp", "hpigcn_op"])
def test_compacted_channel_sparse_model_equals_the_masked_one_and_is_smaller(fresh, clips, sgd_steps,
                                                                             name: str) -> None:
    dense_params, dense_macs = profile(fresh(name), SHAPE)
    fused_params, fused_macs = profile(fuse(fresh(name)), SHAPE)
    x = clips(4, 6)
    model = trained_sparse(fresh(name), x, sgd_steps, level=0.9, granularity="channel")
    small = compact(model)
    assert not is_sparse(small) and not any(parametrize.is_parametrized(m) for m in small.modules())
    test_x = clips(3, 9, seed=1)
    assert max_gap(model, small, test_x) <= 1e-4
    params, macs = profile(small, SHAPE)
    assert params < 0.5 * dense_params and macs < 0.5 * dense_macs, (params, dense_params, macs, dense_macs)
    deployed = fuse(small)
    assert max_gap(model, deployed, test_x) <= 1e-4
    params, macs = profile(deployed, SHAPE)
    assert params < 0.5 * fused_params and macs < 0.5 * fused_macs
    # The masked model itself still works after being copied and compacted.
    assert is_sparse(model) and abs(report(model, macs=False)["overall"] - 0.9) <= 0.005


def test_compact_cuts_a_residual_channel_only_where_every_summand_is_zero(fresh, clips) -> None:
    # HPI-GCN's middle segment is blocks 3-5 (128 channels): block 3 has a conv residual,
    # blocks 4 and 5 identity residuals, so the three blocks' outputs are one stream.
    model = fresh("hpigcn_rp").eval()

    def silence(block: nn.Module, channel: int, residual: bool) -> None:
        # A zero BN scale and shift make a branch output exactly zero in that channel.
        bns = [b.bn for b in block.tcn.branches] + ([block.residual.bn] if residual else [])
        for bn in bns:
            bn.weight.data[channel] = 0.0
            bn.bias.data[channel] = 0.0

    for i in (3, 4, 5):
        silence(model.blocks[i], 7, residual=i == 3)  # zero in every summand: can go
    for i in (3, 4):
        silence(model.blocks[i], 9, residual=i == 3)  # block 5 still writes channel 9: stays
    silence(model.blocks[8], 11, residual=False)  # last segment: the features keep their width
    with torch.no_grad():  # an internal channel of a graph conv (free to go on its own)
        model.blocks[4].gcn.conv_in.weight[3] = 0.0
        model.blocks[4].gcn.conv_in.bias[3] = 0.0
    small = compact(model)
    assert small.blocks[3].residual.conv.out_channels == 127
    assert small.blocks[5].tcn.branches[0].conv.out_channels == 127
    assert small.blocks[6].gcn.conv_in.in_channels == 127
    assert small.blocks[6].residual.conv.in_channels == 127
    assert small.blocks[4].gcn.conv_in.out_channels == 127
    assert small.blocks[8].tcn.branches[0].conv.out_channels == 256
    x = clips(2, 8)
    with torch.no_grad():
        scale = 4.0 / model.features(x).abs().max()
        want, got = model.features(x) * scale, small.features(x) * scale
    assert (want - got).abs().max().item() <= 1e-4
    assert max_gap(model, fuse(small), x) <= 1e-4


def test_element_masks_are_baked_so_fusing_in_place_is_right(fresh, clips, sgd_steps) -> None:
    # ESGN's fuse() edits weights in place, which a mask would silently undo: compact first.
    x = clips(4, 6)
    model = trained_sparse(fresh("esgn"), x, sgd_steps, level=0.95)
    small = compact(model)
    assert max_gap(model, small, x) <= 1e-4
    assert max_gap(model, fuse(small), x) <= 1e-4
    r = report(model, macs=False)
    assert sum(int(torch.count_nonzero(p)) for p in small.parameters()) <= r["nonzero_params"]


def test_compacting_a_dense_model_is_an_eval_copy(fresh, clips) -> None:
    model = fresh("stgcn").train()
    small = compact(model)
    assert model.training and not small.training and small is not model
    assert max_gap(model.eval(), small, clips(2, 5)) == 0.0


@pytest.mark.parametrize("name", ["hpigcn_rp", "stgcn"])
def test_compacting_a_compacted_model_changes_nothing(fresh, clips, name: str) -> None:
    # An inner channel (graph conv output) of the block that opens the last segment is zero,
    # so the first compaction cuts it; the block's output, the features, must keep their
    # width both times.
    model = fresh(name).eval()
    first = model.blocks[-3]  # blocks 6-8: a conv residual, then two identity ones
    assert not isinstance(first.residual, nn.Identity) and isinstance(model.blocks[-1].residual, nn.Identity)
    inner = first.gcn.conv_out.bn if name == "hpigcn_rp" else first.tcn[0]
    inner.weight.data[5] = 0.0
    inner.bias.data[5] = 0.0
    once = compact(model)
    twice = compact(once)
    assert ({k: v.shape for k, v in twice.state_dict().items()}
            == {k: v.shape for k, v in once.state_dict().items()})
    inner_once = once.blocks[-3].gcn.conv_out.bn if name == "hpigcn_rp" else once.blocks[-3].tcn[0]
    assert inner_once.num_features == inner.num_features - 1
    x = clips(2, 8)
    with torch.no_grad():
        want = model.features(x)
        scale = 4.0 / want.abs().max()
        for small in (once, twice):
            got = small.features(x)
            assert got.shape == want.shape and ((got - want) * scale).abs().max().item() <= 1e-4


# -- blocks the rules do not know --------------------------------------------------------------

class ToyBlock(nn.Module):
    """A block of no registered architecture: relu(conv+BN)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.unit = ConvBN(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.unit(x))


class ToyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(ToyBlock(3, 16), ToyBlock(16, 16), ToyBlock(16, 8))
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, m, t, v, c = x.shape
        h = self.blocks(x.permute(0, 1, 4, 2, 3).reshape(n * m, c, t, v))
        return self.head(h.mean(dim=(2, 3)).view(n, m, -1).mean(dim=1))


class ToyRule:
    """What another package would register for its block (using sparsity's helpers)."""

    @staticmethod
    def supports(block: ToyBlock) -> bool:
        return True

    @staticmethod
    def in_width(block: ToyBlock) -> int:
        return block.unit.conv.in_channels

    @staticmethod
    def out_width(block: ToyBlock) -> int:
        return block.unit.conv.out_channels

    @staticmethod
    def passes_input(block: ToyBlock) -> bool:
        return False

    @staticmethod
    def zero(block: ToyBlock, input_zero: torch.Tensor) -> torch.Tensor:
        return convbn_zero(block.unit)

    @staticmethod
    def shrink(block: ToyBlock, alive_in: torch.Tensor, alive_out: torch.Tensor) -> None:
        slice_convbn(block.unit, alive_out.nonzero().flatten(), alive_in.nonzero().flatten())


def channel_sparse_toy() -> nn.Module:
    torch.manual_seed(0)
    return sparsify(ToyNet(), 0.5, granularity="channel").eval()


def test_a_masked_block_without_a_compaction_rule_is_an_error_that_says_how_to_add_one() -> None:
    model = channel_sparse_toy()
    with pytest.raises(ConfigError, match=r"blocks\.0: .*ToyBlock carries masks but has no compaction rule.*"
                                          r"register_compaction\(ToyBlock\)"):
        compact(model)
    with pytest.raises(ConfigError, match="ToyBlock carries masks"):
        inference_form(model)
    assert inference_form(ToyNet()) is not None  # unmasked, it needs no rule: fused as it is


def test_a_registered_rule_cuts_a_new_block_type(clips) -> None:
    model = channel_sparse_toy()
    try:
        register_compaction(ToyBlock)(ToyRule)
        assert compaction_rule(model.blocks[0]) is ToyRule
        small = inference_form(model)
    finally:
        _compact._rules.pop(ToyBlock, None)
    widths = [b.unit.out_channels for b in small.blocks]  # fused: each unit is one conv
    assert widths[0] < 16 and widths[1] < 16 and widths[2] == 8  # the features keep their width
    x = clips(2, 6)
    assert max_gap(model, small, x) <= 1e-5
