"""Re-parameterizable blocks (HPI-GCN): a graph conv over a sum of learnable adjacency
matrices, and a temporal conv with parallel linear branches. Each folds itself exactly.

The six exact transformations, and where they happen:
conv+BN -> conv (``fold_bn``), 1x1 then kx1 -> kx1 (``merge_serial``), avg-pool -> conv
(``avg_pool_kernel``), kernel zero-padding to K (``pad_temporal``), parallel branches -> their
sum, and PA matrices -> their sum (``PAGraphConv.fuse``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from skelray.models._fuse import avg_pool_kernel, fold_bn, merge_serial, pad_temporal
from skelray.models._layers import ConvBN, Einsum


class PAGraphConv(nn.Module):
    """1x1 conv -> sum over ``pa_count`` learnable adjacency matrices -> 1x1 conv + BN.

    With ``groups > 1`` (HPI-GCN-OP) the channels split into groups, each with its own
    matrices. The training form keeps the ``pa_count`` matrices as separate parameters but
    sums them before its one product: the product is linear in the matrices, so that is the
    paper's per-matrix sum of products, with the same gradient for every matrix. Fusing
    stores the sum as one matrix.

    ``init`` says where the matrices start. ``graph``: each at graph / pa_count plus
    ``noise`` (so the sum starts at the layout's graph whatever the count). With the
    adjacency undecayed and SGD, every matrix then moves by the same step, so the sum moves
    ``pa_count`` times as fast as one matrix would: PA count acts as a learning-rate factor on
    the adjacency (``train.adjacency_lr_scale`` is the explicit form). ``official``: as the
    HPI-GCN authors' code does (its ``REP_GCN0``), each matrix drawn uniform in [0.9, 1.1],
    independent of the skeleton graph (their block ignores it), applied to the features by
    the same per-matrix product and summed; the sum then starts near ``pa_count`` times the
    all-ones matrix and the BN after the output conv removes that scale, so there the count
    changes the adjacency's step relative to its size far less than under ``graph``.
    """

    NO_WEIGHT_DECAY = ("pa",)  # the learnable adjacency (skelray.train.loop.no_decay_names)

    def __init__(self, in_channels: int, out_channels: int, graph: Tensor, *, pa_count: int = 5,
                 groups: int = 1, noise: float = 0.01, init: str = "graph") -> None:
        super().__init__()
        assert out_channels % groups == 0, "groups must divide the channels"
        v = graph.shape[-1]
        self.groups = groups
        self.conv_in = nn.Conv2d(in_channels, out_channels, 1)
        if init == "official":
            self.pa = nn.Parameter(torch.empty(pa_count, groups, v, v).uniform_(0.9, 1.1))
        else:
            # Each matrix starts at graph / pa_count (plus noise to tell them apart), so the
            # summed operator starts at the layout's graph whatever the count.
            start = graph.expand(pa_count, groups, v, v) / pa_count
            # Without noise nothing is drawn, so models that differ only in pa_count start
            # with the same other weights from the same seed (the PA-count study relies on it).
            if noise:
                start = start + noise * torch.randn(pa_count, groups, v, v) / pa_count
            self.pa = nn.Parameter(start)
        self.aggregate = Einsum("ngctj,gij->ngcti")
        self.conv_out: nn.Module = ConvBN(out_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        n, c, t, v = h.shape
        h = h.view(n, self.groups, c // self.groups, t, v)
        # Summing the matrices first is the same product and gives every matrix the same
        # gradient as multiplying by each and summing the results, at 1/pa_count of the cost.
        y = self.aggregate(h, self.pa.sum(dim=0))
        return self.conv_out(y.reshape(n, c, t, v))

    def fuse(self) -> PAGraphConv:
        """In place: one matrix (per group), and the BN folded into the output conv."""
        self.pa = nn.Parameter(self.pa.detach().sum(dim=0, keepdim=True))
        if isinstance(self.conv_out, ConvBN):
            self.conv_out = self.conv_out.fuse()
        return self


class TemporalMean(nn.Module):
    """Mean of ``kernel`` consecutive frames, every ``stride`` frames, no padding: the values of
    ``nn.AvgPool2d((kernel, 1), (stride, 1))`` computed as a sum of strided slices. On CPU its
    forward and backward ran 3.5x faster than PyTorch's pooling kernel on a (32, 64, 34, 20)
    input, one thread; benchmarks/bench_train.py times the whole training step."""

    def __init__(self, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        frames = (x.shape[2] - self.kernel) // self.stride + 1
        if frames < 1:
            raise ValueError(f"{x.shape[2]} frames are fewer than the pool's {self.kernel}")
        span = (frames - 1) * self.stride + 1
        out = x[:, :, 0:span:self.stride]
        for i in range(1, self.kernel):
            out = out + x[:, :, i:i + span:self.stride]
        return out / self.kernel

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"


class SerialBranch(nn.Module):
    """1x1 conv -> (kx1 conv, or kx1 average pool) -> BN.

    The 1x1 conv's output is padded in time with the conv's bias (its response to the
    zero padding of its input) instead of zeros, so the whole branch equals one kx1 conv on the
    zero-padded input, borders included. The pool divides by k everywhere, as
    ``count_include_pad=True`` does.
    """

    def __init__(self, channels: int, kernel: int, stride: int, *, pool: bool = False) -> None:
        super().__init__()
        self.kernel, self.pool = kernel, pool
        self.conv1 = nn.Conv2d(channels, channels, 1)
        if pool:
            self.second: nn.Module = TemporalMean(kernel, stride)
        else:
            self.second = nn.Conv2d(channels, channels, (kernel, 1), (stride, 1), bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x)
        p = (self.kernel - 1) // 2
        n, c, _, v = h.shape
        edge = self.conv1.bias.view(1, c, 1, 1).expand(n, c, p, v)
        return self.bn(self.second(torch.cat([edge, h, edge], dim=2)))

    def kernel_bias(self) -> tuple[Tensor, Tensor]:
        c = self.conv1.out_channels
        if self.pool:
            ref = self.conv1.weight
            w2 = avg_pool_kernel(c, self.kernel, dtype=ref.dtype, device=ref.device)
        else:
            w2 = self.second.weight
        w, b = merge_serial(self.conv1.weight, self.conv1.bias, w2, None)
        return fold_bn(w, b, self.bn)


class RepTCN(nn.Module):
    """Parallel linear temporal branches summed: Kx1 conv+BN, 1x1 conv+BN, 1x1 -> 3x1 avg pool
    -> BN, 1x1 -> 5x1 conv -> BN, and for K=9 also 1x1 -> 7x1 conv -> BN. Fuses into one Kx1
    conv with bias."""

    def __init__(self, channels: int, kernel: int = 5, stride: int = 1) -> None:
        super().__init__()
        assert kernel in (5, 9), "the Rep-TCN kernel is 5 or 9"
        self.kernel, self.stride = kernel, stride
        pad = (kernel - 1) // 2
        branches: list[nn.Module] = [
            ConvBN(channels, channels, (kernel, 1), (stride, 1), (pad, 0)),
            ConvBN(channels, channels, (1, 1), (stride, 1)),
            SerialBranch(channels, 3, stride, pool=True),
            SerialBranch(channels, 5, stride),
        ]
        if kernel == 9:
            branches.append(SerialBranch(channels, 7, stride))
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out

    def fuse(self) -> nn.Conv2d:
        weight, bias = 0.0, 0.0
        for branch in self.branches:
            w, b = branch.kernel_bias()
            weight = weight + pad_temporal(w, self.kernel)
            bias = bias + b
        assert isinstance(weight, Tensor) and isinstance(bias, Tensor)
        # Widths come from the folded kernel: a compacted block may map C_in to a different C_out.
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], (self.kernel, 1), (self.stride, 1),
                         ((self.kernel - 1) // 2, 0), device=weight.device, dtype=weight.dtype)
        conv.weight.data.copy_(weight)
        conv.bias.data.copy_(bias)
        return conv
