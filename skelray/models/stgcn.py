"""ST-GCN (Yan et al., AAAI 2018), the reference every other model is compared with.

Follows the original implementation's details because they fix its published size
(3,098,832 parameters and about 2.85 GMACs per person-clip for NTU-60 at T=100):
the graph conv is a 1x1 conv to ``K * out`` channels (with bias) followed by the adjacency
product over the K=3 spatial-partition matrices, each multiplied by a learnable edge-importance
mask; the temporal unit is BN-ReLU-conv(9x1)-BN-dropout; the residual is a conv (with bias)
and BN when the shape changes, and the first block has none; the input BN is over V*C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skelray.data.graph import spatial_partition
from skelray.data.layouts import Layout
from skelray.models._fuse import bn_scale_shift, conv_like, fold_bn
from skelray.models._layers import ConvBN, DataBN, Einsum, SkeletonModel, pool_persons, scaled_widths
from skelray.models._registry import register_model

# (out channels, temporal stride) of the ten blocks.
STAGES = ((64, 1), (64, 1), (64, 1), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2), (256, 1), (256, 1))


class STGCNBlock(nn.Module):
    """Spatial graph conv, temporal conv, residual; fuses into a BN-free block."""

    NO_WEIGHT_DECAY = ("importance",)  # learnable edge weights (skelray.train.loop.no_decay_names)

    def __init__(self, in_channels: int, out_channels: int, adjacency: Tensor, *, stride: int = 1,
                 residual: bool = True, dropout: float = 0.0, edge_importance: bool = True,
                 kernel: int = 9) -> None:
        super().__init__()
        k = adjacency.shape[0]
        self.partitions, self.out_channels = k, out_channels
        self.register_buffer("adjacency", adjacency.clone())
        # Learnable per-edge weights (ones at start), as the reference's edge importance.
        self.importance = nn.Parameter(torch.ones_like(adjacency)) if edge_importance else None
        self.gcn = nn.Conv2d(in_channels, k * out_channels, 1)
        self.aggregate = Einsum("nkctj,kij->ncti")
        pad = (kernel - 1) // 2
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, (kernel, 1), (stride, 1), (pad, 0)),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout),
        )
        if not residual:
            self.residual: nn.Module | None = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = ConvBN(in_channels, out_channels, stride=(stride, 1), bias=True)

    def graph(self) -> Tensor:
        return self.adjacency if self.importance is None else self.adjacency * self.importance

    def forward(self, x: Tensor) -> Tensor:
        n, _, t, v = x.shape
        h = self.gcn(x).view(n, self.partitions, self.out_channels, t, v)
        h = self.tcn(self.aggregate(h, self.graph()))
        if self.residual is not None:
            h = h + self.residual(x)
        return F.relu(h)

    def fuse(self) -> STGCNBlockFused:
        bn1, conv, bn2 = self.tcn[0], self.tcn[2], self.tcn[3]
        scale, shift = bn_scale_shift(bn1)
        a = self.graph().detach()
        k, c = self.partitions, self.out_channels
        w = self.gcn.weight.view(k, c, -1) * scale.view(1, c, 1)
        # The gcn conv's bias is constant over joints, so after the adjacency product it
        # becomes bias * (row sum of A); with BN's scale and shift it is one (C, V) bias.
        b = torch.einsum("kc,ki->ci", self.gcn.bias.view(k, c), a.sum(dim=2))
        b = b * scale[:, None] + shift[:, None]
        residual = self.residual.fuse() if isinstance(self.residual, ConvBN) else self.residual
        tconv = conv_like(conv, *fold_bn(conv.weight, conv.bias, bn2))
        return STGCNBlockFused(w.reshape_as(self.gcn.weight), a, b, tconv, residual)


class STGCNBlockFused(nn.Module):
    """Inference form: 1x1 conv, adjacency product plus a per-(channel, joint) bias, ReLU,
    one temporal conv with bias, residual conv with bias; no BN."""

    def __init__(self, gcn_weight: Tensor, adjacency: Tensor, bias: Tensor, tconv: nn.Conv2d,
                 residual: nn.Module | None) -> None:
        super().__init__()
        self.partitions = adjacency.shape[0]
        self.out_channels = bias.shape[0]
        self.gcn = nn.Conv2d(gcn_weight.shape[1], gcn_weight.shape[0], 1, bias=False,
                             device=gcn_weight.device, dtype=gcn_weight.dtype)
        self.gcn.weight.data.copy_(gcn_weight)
        self.adjacency = nn.Parameter(adjacency.clone())
        self.bias = nn.Parameter(bias[:, None, :].clone())  # (C, 1, V)
        self.aggregate = Einsum("nkctj,kij->ncti")
        self.tconv = tconv
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        n, _, t, v = x.shape
        h = self.gcn(x).view(n, self.partitions, self.out_channels, t, v)
        h = self.tconv(F.relu(self.aggregate(h, self.adjacency) + self.bias))
        if self.residual is not None:
            h = h + self.residual(x)
        return F.relu(h)


class STGCN(SkeletonModel):
    def __init__(self, *, num_classes: int = 60, layout: str | Layout = "ntu25", in_channels: int = 3,
                 num_persons: int = 2, dropout: float = 0.0, edge_importance: bool = True,
                 width: float = 1.0) -> None:
        stages = scaled_widths(STAGES, width, "stgcn.width")
        super().__init__(num_classes=num_classes, layout=layout, in_channels=in_channels,
                         num_persons=num_persons, dropout=dropout, feat_dim=stages[-1][0], name="stgcn")
        # The reference applies dropout inside every temporal unit, not before the head.
        self.drop = nn.Identity()
        a = torch.from_numpy(spatial_partition(self.layout))
        self.data_bn = DataBN(in_channels, self.num_joints)
        blocks, c_in = [], in_channels
        for i, (c_out, stride) in enumerate(stages):
            blocks.append(STGCNBlock(c_in, c_out, a, stride=stride, residual=i > 0, dropout=self.dropout,
                                     edge_importance=edge_importance))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)

    def features(self, x: Tensor) -> Tensor:
        n, m = self.check_input(x)
        return pool_persons(self.blocks(self.data_bn(x)), n, m)


@register_model
def stgcn(num_classes: int = 60, layout: str | Layout = "ntu25", in_channels: int = 3, num_persons: int = 2,
          dropout: float = 0.0, edge_importance: bool = True, width: float = 1.0) -> STGCN:
    """ST-GCN with the spatial partition (K=3), 10 blocks 64..256 (times ``width``), 9x1
    temporal convs."""
    return STGCN(num_classes=num_classes, layout=layout, in_channels=in_channels, num_persons=num_persons,
                 dropout=dropout, edge_importance=edge_importance, width=width)
