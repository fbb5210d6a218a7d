"""``compact``: bake the masks into the weights, then cut the channels that are exactly zero.

A channel is removed only when its output is provably zero everywhere (its filter and bias
are zero and the BN after it maps zero to zero, or the BN's scale and shift are both zero),
so the smaller model computes exactly what the masked one does. Channel masks make that
happen (they zero the bias and the BN affine too); element and kernel masks rarely empty a
whole channel, so for them ``compact`` mostly just bakes.

Residual additions. A block's output is ``relu(tcn(x) + residual(x))``; a channel of that sum
can go only if every tensor summed into it is zero there. Blocks chained by identity
residuals share one channel set (a "segment"): the segment keeps the union of the channels any
of its blocks or its entry produces, and removes only channels that all of them left at zero.
Inside a block the graph conv's and temporal branches' internal channels are free to shrink
on their own. The last segment keeps every channel, so ``features()`` and the head keep their
width (an ensemble averages members' features position by position).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from skelray.models._fuse import bn_scale_shift, conv_like
from skelray.models._layers import ConvBN
from skelray.models._rep import PAGraphConv, RepTCN
from skelray.models.hpigcn import HPIBlock
from skelray.models.stgcn import STGCNBlock
from skelray.sparsity._masks import remove_masks


def compact(model: nn.Module) -> nn.Module:
    """A smaller dense, eval-mode copy of a masked ``model`` with identical outputs.

    Masks are baked into the weights (CTF masks at their crisp limit), then every output
    channel whose output is exactly zero is removed together with the matching input channels
    of the next layers, BN entries and residual paths. ``skelray.models.fuse`` applies to the
    result. The input model is left untouched; a dense model comes back as an eval-mode copy.
    """
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        remove_masks(out, bake=True)
        for module in list(out.modules()):
            blocks = getattr(module, "blocks", None)
            if isinstance(blocks, nn.Sequential):
                shrink_blocks(blocks)
    return out


# -- zero tests and slicing --------------------------------------------------------------------

def rows_zero(conv: nn.Conv2d) -> Tensor:
    """Output channels whose filter and bias are all zero (output exactly 0)."""
    zero = conv.weight.flatten(1).eq(0).all(dim=1)
    return zero & conv.bias.eq(0) if conv.bias is not None else zero


def bn_zero(bn: nn.BatchNorm2d, input_zero: Tensor) -> Tensor:
    """Channels an eval-mode BN outputs as exactly 0: its shift is 0 and either its scale is 0
    (a masked affine) or its input is 0."""
    scale, shift = bn_scale_shift(bn)
    return shift.eq(0) & (scale.eq(0) | input_zero)


def _index(alive: Tensor) -> Tensor:
    # Keep one channel when all are dead: zero-width convs are not worth the special cases,
    # and the kept channel is zero anyway, so outputs do not change.
    idx = alive.nonzero().flatten()
    return idx if len(idx) else torch.zeros(1, dtype=torch.long, device=alive.device)


def slice_conv(conv: nn.Conv2d, out_idx: Tensor | None = None, in_idx: Tensor | None = None) -> nn.Conv2d:
    w, b = conv.weight, conv.bias
    if out_idx is not None:
        w, b = w[out_idx], (b[out_idx] if b is not None else None)
    if in_idx is not None:
        assert conv.groups == 1, "grouped convs keep their inputs"
        w = w[:, in_idx]
    return conv_like(conv, w.clone(), b.clone() if b is not None else None)


def slice_bn(bn: nn.BatchNorm2d, idx: Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(idx), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats,
                         device=bn.running_mean.device, dtype=bn.running_mean.dtype)
    new.running_mean.copy_(bn.running_mean[idx])
    new.running_var.copy_(bn.running_var[idx])
    new.num_batches_tracked.copy_(bn.num_batches_tracked)
    if bn.affine:
        new.weight.data.copy_(bn.weight[idx])
        new.bias.data.copy_(bn.bias[idx])
    return new.train(bn.training)


def slice_convbn(m: ConvBN, out_idx: Tensor | None, in_idx: Tensor | None) -> None:
    m.conv = slice_conv(m.conv, out_idx, in_idx)
    if out_idx is not None:
        m.bn = slice_bn(m.bn, out_idx)


def convbn_zero(m: ConvBN) -> Tensor:
    return bn_zero(m.bn, rows_zero(m.conv))


class CompactRepTCN(RepTCN):
    """A RepTCN adopting branches that compaction narrowed, so its input and output widths may
    differ; forward and the exact fold are RepTCN's own."""

    def __init__(self, tcn: RepTCN) -> None:
        nn.Module.__init__(self)  # adopt the branches as they are instead of building new ones
        self.kernel, self.stride, self.branches = tcn.kernel, tcn.stride, tcn.branches


# -- per-architecture block rules ----------------------------------------------------------------

def _residual_zero(residual: nn.Module | None, alive_in: Tensor, width: int) -> Tensor:
    if residual is None:
        return torch.ones(width, dtype=torch.bool, device=alive_in.device)
    if isinstance(residual, nn.Identity):
        return ~alive_in
    assert isinstance(residual, ConvBN)
    return convbn_zero(residual)


def _shrink_residual(block: nn.Module, out_idx: Tensor, in_idx: Tensor) -> None:
    if isinstance(block.residual, ConvBN):
        slice_convbn(block.residual, out_idx, in_idx)


class _HPI:
    """HPI-GCN block: PA graph conv (conv_in -> PA -> conv_out+BN), Rep-TCN, residual."""

    @staticmethod
    def width(block: HPIBlock) -> int:
        # The block's output: its Rep-TCN's Kx1 conv+BN branch. Not the graph conv's output, an
        # inner width that an earlier compaction may have cut below it.
        return block.tcn.branches[0].bn.num_features

    @staticmethod
    def tcn_zero(block: HPIBlock) -> Tensor:
        zero = None
        for br in block.tcn.branches:
            if isinstance(br, ConvBN):
                z = convbn_zero(br)
            else:  # a serial branch ends in BN after conv1 -> pool, or after its second conv
                z = bn_zero(br.bn, rows_zero(br.conv1 if br.pool else br.second))
            zero = z if zero is None else zero & z
        return zero

    @staticmethod
    def shrink(block: HPIBlock, alive_in: Tensor, alive_out: Tensor) -> None:
        in_idx, out_idx = _index(alive_in), _index(alive_out)
        gcn: PAGraphConv = block.gcn
        # With channel groups (HPI-GCN-OP) the PA product reshapes channels into equal groups,
        # so its inner width stays whole.
        m1 = _index(~rows_zero(gcn.conv_in)) if gcn.groups == 1 else None
        gcn.conv_in = slice_conv(gcn.conv_in, m1, in_idx)
        assert isinstance(gcn.conv_out, ConvBN)
        m2 = _index(~convbn_zero(gcn.conv_out))
        slice_convbn(gcn.conv_out, m2, m1)
        for br in block.tcn.branches:
            if isinstance(br, ConvBN):
                slice_convbn(br, out_idx, m2)
            elif br.pool:  # the pool is per channel: conv1's outputs are the block's outputs
                br.conv1 = slice_conv(br.conv1, out_idx, m2)
                br.bn = slice_bn(br.bn, out_idx)
            else:
                m3 = _index(~rows_zero(br.conv1))
                br.conv1 = slice_conv(br.conv1, m3, m2)
                br.second = slice_conv(br.second, out_idx, m3)
                br.bn = slice_bn(br.bn, out_idx)
        block.tcn = CompactRepTCN(block.tcn)
        _shrink_residual(block, out_idx, in_idx)


class _STGCN:
    """ST-GCN block: 1x1 conv to K*C, adjacency product, BN-ReLU-conv(9x1)-BN, residual."""

    @staticmethod
    def width(block: STGCNBlock) -> int:
        return block.tcn[3].num_features

    @staticmethod
    def tcn_zero(block: STGCNBlock) -> Tensor:
        return bn_zero(block.tcn[3], rows_zero(block.tcn[2]))

    @staticmethod
    def shrink(block: STGCNBlock, alive_in: Tensor, alive_out: Tensor) -> None:
        in_idx, out_idx = _index(alive_in), _index(alive_out)
        k, c = block.partitions, block.out_channels
        # Channel c after the adjacency product sums rows (0, c), (1, c), ... of the graph conv;
        # it is zero if all of them are, and the BN-ReLU before the temporal conv keeps it zero.
        summed_zero = rows_zero(block.gcn).view(k, c).all(dim=0)
        m1 = _index(~bn_zero(block.tcn[0], summed_zero))
        rows = (torch.arange(k, device=m1.device)[:, None] * c + m1[None, :]).flatten()
        block.gcn = slice_conv(block.gcn, rows, in_idx)
        block.tcn[0] = slice_bn(block.tcn[0], m1)
        block.tcn[2] = slice_conv(block.tcn[2], out_idx, m1)
        block.tcn[3] = slice_bn(block.tcn[3], out_idx)
        block.out_channels = len(m1)  # the width the forward reshapes the graph conv's output to
        _shrink_residual(block, out_idx, in_idx)


RULES: dict[type, type] = {HPIBlock: _HPI, STGCNBlock: _STGCN}


def _is_identity(block: nn.Module) -> bool:
    return isinstance(getattr(block, "residual", None), nn.Identity)


def _in_width(block: nn.Module) -> int:
    gcn = block.gcn
    conv: nn.Conv2d = gcn.conv_in if isinstance(gcn, PAGraphConv) else gcn
    return conv.in_channels


def shrink_blocks(blocks: nn.Sequential) -> None:
    """Cut zero channels through a chain of known blocks (in place); unknown blocks: no-op."""
    rules = [RULES.get(type(b)) for b in blocks]
    if not blocks or any(r is None for r in rules) or not _supported(blocks):
        return
    # Segments: a new one starts wherever the residual is not an identity.
    segments: list[list[int]] = []
    for i, b in enumerate(blocks):
        if i == 0 or not _is_identity(b):
            segments.append([i])
        else:
            segments[-1].append(i)
    device = next(blocks.parameters()).device
    alive_in = torch.ones(_in_width(blocks[0]), dtype=torch.bool, device=device)
    for s, seg in enumerate(segments):
        first, rule = blocks[seg[0]], rules[seg[0]]
        width = rule.width(first)
        if s == len(segments) - 1:  # the features: keep their width
            alive = torch.ones(width, dtype=torch.bool, device=device)
        else:
            zero = rule.tcn_zero(first) & _residual_zero(first.residual, alive_in, width)
            for j in seg[1:]:
                zero = zero & rules[j].tcn_zero(blocks[j])
            alive = ~zero
        rule.shrink(first, alive_in, alive)
        for j in seg[1:]:
            rules[j].shrink(blocks[j], alive, alive)
        alive_in = alive


def _supported(blocks: nn.Sequential) -> bool:
    # The training forms only; a fused model has nothing left to mask.
    checks: list[Callable[[nn.Module], bool]] = [
        lambda b: not isinstance(b, HPIBlock) or (isinstance(b.gcn.conv_out, ConvBN)
                                                   and isinstance(b.tcn, RepTCN)),
        lambda b: not isinstance(b, STGCNBlock) or isinstance(b.tcn, nn.Sequential),
    ]
    return all(check(b) for b in blocks for check in checks)
