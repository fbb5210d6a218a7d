"""How ``skelray.models.compact`` sees sparsity: the masks it bakes and the rules that cut
exactly-zero channels from the zoo's blocks (``compact`` and ``inference_form`` live in
``skelray.models``; ``skelray.sparsity.compact`` is the same function).

A channel is removed only when its output is provably zero everywhere (its filter and bias
are zero and the BN after it maps zero to zero, or the BN's scale and shift are both zero),
so the smaller model computes exactly what the masked one does. Channel masks make that
happen (they zero the bias and the BN affine too); element and kernel masks rarely empty a
whole channel, so for them ``compact`` mostly just bakes.

Importing this module registers sparsity's masks (``is_sparse`` finds them, baking is
``remove_masks(bake=True)``) and one ``CompactionRule`` per block type of the zoo with a
residual chain: ``HPIBlock`` (PA graph conv, Rep-TCN) and ``STGCNBlock``. Inside a block the
graph conv's and temporal branches' internal channels shrink on their own; the chain's shared
channel sets are ``skelray.models.compact``'s business.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from skelray.models import register_compaction, register_masks
from skelray.models._fuse import bn_scale_shift, conv_like
from skelray.models._layers import ConvBN
from skelray.models._rep import PAGraphConv, RepTCN
from skelray.models.hpigcn import HPIBlock
from skelray.models.stgcn import STGCNBlock
from skelray.sparsity._api import is_sparse
from skelray.sparsity._masks import remove_masks


def _bake(model: nn.Module) -> None:
    """Masks baked into the weights (CTF masks at their crisp limit) and removed."""
    remove_masks(model, bake=True)


register_masks(carries=is_sparse, bake=_bake)


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
# Both blocks end in ``relu(tcn(x) + residual(x))`` with a residual that is None (the first
# ST-GCN block), an identity, or a ConvBN.

def _residual_zero(residual: nn.Module | None, input_zero: Tensor, width: int) -> Tensor:
    if residual is None:
        return torch.ones(width, dtype=torch.bool, device=input_zero.device)
    if isinstance(residual, nn.Identity):
        return input_zero
    assert isinstance(residual, ConvBN)
    return convbn_zero(residual)


def _shrink_residual(block: nn.Module, out_idx: Tensor, in_idx: Tensor) -> None:
    if isinstance(block.residual, ConvBN):
        slice_convbn(block.residual, out_idx, in_idx)


@register_compaction(HPIBlock)
class _HPI:
    """HPI-GCN block: PA graph conv (conv_in -> PA -> conv_out+BN), Rep-TCN, residual."""

    @staticmethod
    def supports(block: HPIBlock) -> bool:
        # The training form only; a fused block has nothing left to mask.
        return isinstance(block.gcn.conv_out, ConvBN) and isinstance(block.tcn, RepTCN)

    @staticmethod
    def in_width(block: HPIBlock) -> int:
        return block.gcn.conv_in.in_channels

    @staticmethod
    def out_width(block: HPIBlock) -> int:
        # The block's output: its Rep-TCN's Kx1 conv+BN branch. Not the graph conv's output, an
        # inner width that an earlier compaction may have cut below it.
        return block.tcn.branches[0].bn.num_features

    @staticmethod
    def passes_input(block: HPIBlock) -> bool:
        return isinstance(block.residual, nn.Identity)

    @staticmethod
    def zero(block: HPIBlock, input_zero: Tensor) -> Tensor:
        zero = _residual_zero(block.residual, input_zero, _HPI.out_width(block))
        for br in block.tcn.branches:
            if isinstance(br, ConvBN):
                zero = zero & convbn_zero(br)
            else:  # a serial branch ends in BN after conv1 -> pool, or after its second conv
                zero = zero & bn_zero(br.bn, rows_zero(br.conv1 if br.pool else br.second))
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


@register_compaction(STGCNBlock)
class _STGCN:
    """ST-GCN block: 1x1 conv to K*C, adjacency product, BN-ReLU-conv(9x1)-BN, residual."""

    @staticmethod
    def supports(block: STGCNBlock) -> bool:
        return isinstance(block.tcn, nn.Sequential)  # the training form

    @staticmethod
    def in_width(block: STGCNBlock) -> int:
        return block.gcn.in_channels

    @staticmethod
    def out_width(block: STGCNBlock) -> int:
        return block.tcn[3].num_features

    @staticmethod
    def passes_input(block: STGCNBlock) -> bool:
        return isinstance(block.residual, nn.Identity)

    @staticmethod
    def zero(block: STGCNBlock, input_zero: Tensor) -> Tensor:
        own = bn_zero(block.tcn[3], rows_zero(block.tcn[2]))
        return own & _residual_zero(block.residual, input_zero, _STGCN.out_width(block))

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
