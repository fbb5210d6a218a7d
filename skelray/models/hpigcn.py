"""HPI-GCN: a GCN trained with over-parameterized, re-parameterizable blocks and served as
plain single-branch blocks (HPI-GCN-RP), or with grouped learnable adjacency (HPI-GCN-OP).

Block: PA graph conv (1x1 conv, sum of ``pa_count`` learnable adjacency matrices, 1x1 conv +
BN), ReLU, Rep-TCN (parallel linear branches, stride here), residual, ReLU. Nine blocks of
64, 64, 64, 128, 128, 128, 256, 256, 256 channels (times ``width``), stride 2 at blocks 4 and 7.
``skelray.models.fuse`` folds every block into: 1x1 conv, one adjacency product, 1x1 conv with
bias, ReLU, one Kx1 conv with bias. The input BN (per joint) is left as it is.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skelray.data.graph import normalize_columns, undirected_adjacency
from skelray.data.layouts import Layout
from skelray.errors import ConfigError, check_choice
from skelray.models._fuse import bn_scale_shift
from skelray.models._layers import (
    ConvBN,
    DataBN,
    SkeletonModel,
    check_int,
    pool_persons,
    scaled_widths,
    temporal_difference,
)
from skelray.models._registry import register_model
from skelray.models._rep import PAGraphConv, RepTCN

STAGES = ((64, 1), (64, 1), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2), (256, 1), (256, 1))
EMBED_CHANNELS = 64


class JointEmbedding(nn.Module):
    """The joint stream's input: a 1x1 conv of the positions (32 channels) beside 1x1 convs
    (8 channels each) of four temporal differences, x_t - x_{t-1}, x_t - x_{t-2},
    x_t - x_{t+1}, x_t - x_{t+2}; then BN and ReLU. Fusing folds the BN into both convs."""

    SHIFTS = (1, 2, -1, -2)

    def __init__(self, in_channels: int, out_channels: int = EMBED_CHANNELS) -> None:
        super().__init__()
        half = out_channels // 2
        self.position = nn.Conv2d(in_channels, half, 1)
        # One grouped conv: group g embeds difference g only.
        groups = len(self.SHIFTS)
        self.motion = nn.Conv2d(groups * in_channels, out_channels - half, 1, groups=groups)
        self.bn: nn.Module = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        diffs = torch.cat([temporal_difference(x, s) for s in self.SHIFTS], dim=1)
        return F.relu(self.bn(torch.cat([self.position(x), self.motion(diffs)], dim=1)))

    def fuse(self) -> JointEmbedding:
        if isinstance(self.bn, nn.BatchNorm2d):
            scale, shift = bn_scale_shift(self.bn)
            half = self.position.out_channels
            for conv, sl in ((self.position, slice(0, half)), (self.motion, slice(half, None))):
                conv.weight.data.mul_(scale[sl].view(-1, 1, 1, 1))
                conv.bias.data.mul_(scale[sl]).add_(shift[sl])
            self.bn = nn.Identity()
        return self


class HPIBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, graph: Tensor, *, stride: int, pa_count: int,
                 groups: int, tcn_kernel: int, pa_init: str = "graph", pa_noise: float = 0.01) -> None:
        super().__init__()
        self.gcn = PAGraphConv(in_channels, out_channels, graph, pa_count=pa_count, groups=groups,
                               init=pa_init, noise=pa_noise)
        self.tcn = RepTCN(out_channels, tcn_kernel, stride)
        if in_channels == out_channels and stride == 1:
            self.residual: nn.Module = nn.Identity()
        else:
            self.residual = ConvBN(in_channels, out_channels, stride=(stride, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.tcn(F.relu(self.gcn(x))) + self.residual(x))


class HPIGCN(SkeletonModel):
    def __init__(self, *, name: str, num_classes: int, layout: str | Layout, in_channels: int,
                 num_persons: int, dropout: float, pa_count: int, tcn_kernel: int, input_embedding: str,
                 groups: int, width: float = 1.0, pa_init: str = "graph", pa_noise: float = 0.01) -> None:
        check_int(groups, f"{name}.groups")
        # The embedding is one more stage; scaled widths stay multiples of 8 (its four motion
        # groups) and of the adjacency groups.
        (embed, _), *stages = scaled_widths(((EMBED_CHANNELS, 1), *STAGES), width, f"{name}.width",
                                            multiple=max(8, groups))
        super().__init__(num_classes=num_classes, layout=layout, in_channels=in_channels,
                         num_persons=num_persons, dropout=dropout, feat_dim=stages[-1][0], name=name)
        check_int(pa_count, f"{name}.pa_count")
        check_choice(tcn_kernel, (5, 9), f"{name}.tcn_kernel")
        check_choice(input_embedding, ("joint", "plain"), f"{name}.input_embedding")
        check_choice(pa_init, ("graph", "official"), f"{name}.pa_init")
        if isinstance(pa_noise, bool) or not isinstance(pa_noise, (int, float)) or not 0 <= pa_noise < float("inf"):
            raise ConfigError(f"must be a number >= 0, got {pa_noise!r}", where=f"{name}.pa_noise",
                              fix="e.g. 0.01 (the default), or 0 for matrices that start exactly at graph / pa_count")
        if embed % groups:
            raise ConfigError(f"{groups} groups do not divide the {embed} channels of block 1",
                              where=f"{name}.groups", fix="use 1, 2, 4, 8, 16, 32 or 64")
        self.pa_count, self.tcn_kernel, self.groups = pa_count, tcn_kernel, groups
        v = self.num_joints
        # The layout's graph with self-links, normalised so every joint's weights sum to one.
        graph = normalize_columns(undirected_adjacency(self.layout) + np.eye(v))
        graph = torch.from_numpy(graph.astype(np.float32))
        self.data_bn = DataBN(in_channels, v)
        if input_embedding == "joint":
            self.embed: nn.Module = JointEmbedding(in_channels, embed)
        else:  # bone and motion streams carry their own differences already
            self.embed = nn.Sequential(ConvBN(in_channels, embed), nn.ReLU())
        blocks, c_in = [], embed
        for c_out, stride in stages:
            blocks.append(HPIBlock(c_in, c_out, graph, stride=stride, pa_count=pa_count, groups=groups,
                                   tcn_kernel=tcn_kernel, pa_init=pa_init, pa_noise=pa_noise))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)

    def features(self, x: Tensor) -> Tensor:
        n, m = self.check_input(x)
        return pool_persons(self.blocks(self.embed(self.data_bn(x))), n, m)


@register_model
def hpigcn_rp(num_classes: int = 60, layout: str | Layout = "ntu25", in_channels: int = 3,
              num_persons: int = 2, dropout: float = 0.0, pa_count: int = 5, tcn_kernel: int = 5,
              input_embedding: str = "joint", width: float = 1.0, pa_init: str = "graph",
              pa_noise: float = 0.01) -> HPIGCN:
    """HPI-GCN-RP: ``pa_count`` learnable adjacency matrices per block, Rep-TCN with K=5 or 9;
    ``input_embedding="plain"`` for bone and motion streams; ``width`` scales every channel count;
    ``pa_init`` is ``graph`` (skelray's: the matrices sum to the skeleton graph) or ``official``
    (the authors' code: each matrix uniform in [0.9, 1.1]), ``pa_noise`` the noise of ``graph``
    (see ``skelray.models._rep.PAGraphConv``)."""
    return HPIGCN(name="hpigcn_rp", num_classes=num_classes, layout=layout, in_channels=in_channels,
                  num_persons=num_persons, dropout=dropout, pa_count=pa_count, tcn_kernel=tcn_kernel,
                  input_embedding=input_embedding, groups=1, width=width, pa_init=pa_init,
                  pa_noise=pa_noise)


@register_model
def hpigcn_op(num_classes: int = 60, layout: str | Layout = "ntu25", in_channels: int = 3,
              num_persons: int = 2, dropout: float = 0.0, pa_count: int = 5, tcn_kernel: int = 5,
              input_embedding: str = "joint", groups: int = 8, width: float = 1.0, pa_init: str = "graph",
              pa_noise: float = 0.01) -> HPIGCN:
    """HPI-GCN-OP: as RP, but each of ``groups`` channel groups has its own adjacency matrices."""
    return HPIGCN(name="hpigcn_op", num_classes=num_classes, layout=layout, in_channels=in_channels,
                  num_persons=num_persons, dropout=dropout, pa_count=pa_count, tcn_kernel=tcn_kernel,
                  input_embedding=input_embedding, groups=groups, width=width, pa_init=pa_init,
                  pa_noise=pa_noise)
