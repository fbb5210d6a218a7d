"""Blocks every architecture shares: the model base class, input BN, conv+BN, einsum.

Tensors inside a model are ``(N*M, C, T, V)``: persons folded into the batch, channels first,
so a temporal conv is a ``(k, 1)`` ``Conv2d`` and a graph conv is an einsum over ``V``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from skelray.data.layouts import Layout, get_layout
from skelray.data.transforms import mirror_joints
from skelray.errors import ConfigError, DataError
from skelray.models._fuse import conv_like, fold_bn


class Einsum(nn.Module):
    """``torch.einsum`` as a module, so the profiler can count its multiply-adds.

    Graph products (adjacency, attention) go through it; one product of the operands' index
    sizes is the number of multiply-accumulates of a dense einsum.
    """

    def __init__(self, equation: str) -> None:
        super().__init__()
        self.equation = equation.replace(" ", "")
        self._inputs = self.equation.split("->")[0].split(",")

    def forward(self, *operands: Tensor) -> Tensor:
        return torch.einsum(self.equation, *operands)

    def count_macs(self, inputs: tuple[Tensor, ...], output: Tensor) -> int:
        sizes: dict[str, int] = {}
        for spec, t in zip(self._inputs, inputs):
            for letter, dim in zip(spec, t.shape):
                sizes[letter] = max(sizes.get(letter, 1), int(dim))
        return math.prod(sizes.values())

    def extra_repr(self) -> str:
        return repr(self.equation)


class ConvBN(nn.Module):
    """A conv followed by BN; fuses into one conv with bias.

    The conv has no bias by default because the BN's shift makes it redundant; ``bias=True``
    exists only to match reference parameter counts (ST-GCN's residual).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int] = (1, 1),
                 stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                 dilation: tuple[int, int] = (1, 1), *, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, dilation, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))

    def kernel_bias(self) -> tuple[Tensor, Tensor]:
        return fold_bn(self.conv.weight, self.conv.bias, self.bn)

    def fuse(self) -> nn.Conv2d:
        return conv_like(self.conv, *self.kernel_bias())


class DataBN(nn.Module):
    """Input normalisation per joint and channel (ST-GCN's ``data_bn``, ``BatchNorm1d(V*C)``),
    shared by all persons; also folds persons into the batch: ``(N, M, T, V, C) -> (N*M, C, T, V)``.

    It stays as it is in fused models: its scale differs per joint, so it cannot fold into the
    first conv, which shares its weights across joints. In eval mode it is one affine op.
    """

    def __init__(self, in_channels: int, num_joints: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(in_channels * num_joints)

    def forward(self, x: Tensor) -> Tensor:
        n, m, t, v, c = x.shape
        h = x.permute(0, 1, 3, 4, 2).reshape(n * m, v * c, t)
        h = self.bn(h)
        return h.view(n * m, v, c, t).permute(0, 2, 3, 1).contiguous()


def check_int(value: object, field: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"must be an integer >= {minimum}, got {value!r}", where=field)
    return value


def scaled_widths(stages: tuple[tuple[int, int], ...], width: float, field: str, *,
                  multiple: int = 8) -> tuple[tuple[int, int], ...]:
    """``(channels, stride)`` stages with every width times ``width``, rounded to a multiple of
    ``multiple`` (at least one multiple): the knob that trades accuracy for speed."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 4:
        raise ConfigError(f"must be a number in (0, 4], got {width!r}", where=field,
                          fix="e.g. 0.5 for half the channels, 1.0 for the paper's widths")
    return tuple((max(multiple, round(c * width / multiple) * multiple), s) for c, s in stages)


class SkeletonModel(nn.Module):
    """Base of every registered model.

    Subclasses build a backbone and implement ``features(x) -> (N, feat_dim)``; the head is a
    dropout and a linear layer on those features, so an ensemble can average members'
    features before one shared head.
    """

    feat_dim: int

    def __init__(self, *, num_classes: int, layout: str | Layout, in_channels: int, num_persons: int,
                 dropout: float, feat_dim: int, name: str) -> None:
        super().__init__()
        self.num_classes = check_int(num_classes, f"{name}.num_classes")
        self.in_channels = check_int(in_channels, f"{name}.in_channels")
        self.num_persons = check_int(num_persons, f"{name}.num_persons")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"must be a number in [0, 1), got {dropout!r}", where=f"{name}.dropout")
        self.dropout = float(dropout)
        self.layout = get_layout(layout)
        self.num_joints = self.layout.num_joints
        self.feat_dim = feat_dim
        self.model_name = name
        self.drop = nn.Dropout(self.dropout)
        self.head = nn.Linear(feat_dim, self.num_classes)
        self.mirror_tta: tuple[int, ...] | None = None  # set by enable_mirror_tta()

    def enable_mirror_tta(self, on: bool = True) -> SkeletonModel:
        """In eval mode, average the logits of each input and of its left-right mirror image
        (one forward of a doubled batch). Training is unchanged; the weights are the same, so
        a checkpoint loads either way. Raises if the layout cannot be mirrored."""
        self.mirror_tta = self.layout.mirror() if on else None
        return self

    def check_input(self, x: Tensor) -> tuple[int, int]:
        """Reject input that does not match the model; returns ``(N, M)``."""
        if x.dim() != 5:
            raise DataError(f"input has shape {tuple(x.shape)}, expected (N, M, T, V, C)",
                            where=self.model_name)
        n, m, t, v, c = x.shape
        if v != self.num_joints:
            raise DataError(f"input has {v} joints, the model's layout '{self.layout.name}' has "
                            f"{self.num_joints}", where=self.model_name,
                            fix="create the model with the layout of the data")
        if c != self.in_channels:
            raise DataError(f"input has {c} channels, the model takes {self.in_channels}",
                            where=self.model_name, fix="set in_channels to the data's channel count")
        if t < 1 or n < 1 or m < 1:
            raise DataError(f"input has an empty dimension: {tuple(x.shape)}", where=self.model_name)
        return n, m

    def features(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def classify(self, x: Tensor) -> Tensor:
        """Logits of one forward pass (what ``forward`` runs, once or on a mirrored batch)."""
        return self.head(self.drop(self.features(x)))

    def forward(self, x: Tensor) -> Tensor:
        if self.mirror_tta is None or self.training:
            return self.classify(x)
        logits = self.classify(torch.cat([x, mirror_joints(x, self.mirror_tta)]))
        n = x.shape[0]
        return (logits[:n] + logits[n:]) / 2


def temporal_difference(x: Tensor, shift: int, dim: int = 2) -> Tensor:
    """``x_t - x_{t-shift}`` along ``dim``, zero where ``t - shift`` falls outside the clip
    (so the first frames of a velocity, or the last of a forward difference, are zero)."""
    t = x.shape[dim]
    out = torch.zeros_like(x)
    if 0 < abs(shift) < t:
        s, n = abs(shift), t - abs(shift)
        later, earlier = x.narrow(dim, s, n), x.narrow(dim, 0, n)
        if shift > 0:
            out.narrow(dim, s, n).copy_(later - earlier)
        else:
            out.narrow(dim, 0, n).copy_(earlier - later)
    return out


def pool_persons(h: Tensor, n: int, m: int) -> Tensor:
    """Global average over frames and joints, then over persons: ``(N*M, C, T, V) -> (N, C)``."""
    return h.mean(dim=(2, 3)).view(n, m, -1).mean(dim=1)
