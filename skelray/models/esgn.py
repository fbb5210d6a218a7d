"""ESGN: a light semantics-guided network in the style of SGN (Zhang et al., CVPR 2020),
with a multi-scale temporal module; about 0.69M parameters for NTU-60.

Joint level: position and velocity embeddings (1x1 conv MLPs) are summed, the joint-type
semantics (an embedded one-hot of the joint index) are concatenated, a spatial attention graph
(softmax over joint-pair similarities of the embedded features, one per frame) drives three
residual graph convs. Frame level: the frame-index semantics (an embedded one-hot of the
frame's relative position in the clip, so any T works) are added, joints are max-pooled,
then parallel dilated 3x1 convs, a 1x1 conv to 512 and a max over time.
Every BN follows a linear op and folds into it on ``fuse``; the input BNs stay.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skelray.data.layouts import Layout
from skelray.models._fuse import bn_scale_shift
from skelray.models._layers import (
    ConvBN,
    DataBN,
    Einsum,
    SkeletonModel,
    check_int,
    temporal_difference,
)
from skelray.models._registry import register_model

EMBED = 64  # per embedding; joint features are 2 * EMBED after the joint-type concat
GCN_CHANNELS = (128, 256, 256)
OUT_CHANNELS = 512


def _mlp(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.ReLU(),
                         nn.Conv2d(hidden, out_channels, 1), nn.ReLU())


class SpatialAttention(nn.Module):
    """Per frame, ``G[i, j] = softmax_j(theta(z_i) . phi(z_j) / sqrt(d))``: how much joint j
    feeds joint i. Scaled like dot-product attention so the softmax does not saturate."""

    def __init__(self, in_channels: int, dim: int = 256) -> None:
        super().__init__()
        self.theta = nn.Conv2d(in_channels, dim, 1)
        self.phi = nn.Conv2d(in_channels, dim, 1)
        self.similarity = Einsum("ncti,nctj->ntij")
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, z: Tensor) -> Tensor:
        return torch.softmax(self.similarity(self.theta(z), self.phi(z)) * self.scale, dim=-1)


class AttentionGraphConv(nn.Module):
    """``ReLU(BN(W (G x) + W_res x))``; fusing folds the BN into both 1x1 convs."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.aggregate = Einsum("ntij,nctj->ncti")
        self.w = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.w_res = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor, graph: Tensor) -> Tensor:
        return F.relu(self.bn(self.w(self.aggregate(graph, x)) + self.w_res(x)))

    def fuse(self) -> AttentionGraphConv:
        if isinstance(self.bn, nn.BatchNorm2d):
            scale, shift = bn_scale_shift(self.bn)
            out, inp = self.w.out_channels, self.w.in_channels
            w = nn.Conv2d(inp, out, 1, device=scale.device, dtype=self.w.weight.dtype)
            w.weight.data.copy_(self.w.weight * scale.view(-1, 1, 1, 1))
            w.bias.data.copy_(shift)
            self.w = w
            self.w_res.weight.data.mul_(scale.view(-1, 1, 1, 1))
            self.bn = nn.Identity()
        return self


class MultiScaleTCN(nn.Module):
    """Parallel 3x1 convs with dilations 1..4 (receptive fields 3, 5, 7, 9 frames), each to a
    quarter of the channels and concatenated, then ReLU and a residual."""

    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 2, 3, 4)) -> None:
        super().__init__()
        assert channels % len(dilations) == 0
        width = channels // len(dilations)
        self.branches = nn.ModuleList(
            ConvBN(channels, width, (3, 1), padding=(d, 0), dilation=(d, 1)) for d in dilations)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(torch.cat([b(x) for b in self.branches], dim=1)) + x


class ESGN(SkeletonModel):
    def __init__(self, *, num_classes: int = 60, layout: str | Layout = "ntu25", in_channels: int = 3,
                 num_persons: int = 2, dropout: float = 0.0, frame_buckets: int = 20) -> None:
        super().__init__(num_classes=num_classes, layout=layout, in_channels=in_channels,
                         num_persons=num_persons, dropout=dropout, feat_dim=OUT_CHANNELS, name="esgn")
        self.frame_buckets = check_int(frame_buckets, "esgn.frame_buckets")
        v = self.num_joints
        self.data_bn = DataBN(in_channels, v)
        self.velocity_bn = DataBN(in_channels, v)  # velocities have their own scale
        self.position_embed = _mlp(in_channels, EMBED, EMBED)
        self.velocity_embed = _mlp(in_channels, EMBED, EMBED)
        self.joint_embed = _mlp(v, EMBED, EMBED)
        self.frame_embed = _mlp(frame_buckets, EMBED, GCN_CHANNELS[-1])
        # One-hot joint types as a (1, V, 1, V) image: channel j is 1 at joint j.
        self.register_buffer("joint_onehot", torch.eye(v).view(1, v, 1, v), persistent=False)
        self.attention = SpatialAttention(2 * EMBED)
        layers, c_in = [], 2 * EMBED
        for c_out in GCN_CHANNELS:
            layers.append(AttentionGraphConv(c_in, c_out))
            c_in = c_out
        self.gcn = nn.ModuleList(layers)
        self.tcn = MultiScaleTCN(c_in)
        self.expand = nn.Sequential(ConvBN(c_in, OUT_CHANNELS), nn.ReLU())

    def _frame_onehot(self, t: int, like: Tensor) -> Tensor:
        """Frame t's relative position in the clip as one of ``frame_buckets`` one-hots."""
        bucket = torch.div(torch.arange(t, device=like.device) * self.frame_buckets, t, rounding_mode="floor")
        onehot = F.one_hot(bucket, self.frame_buckets).to(like.dtype)  # (T, B)
        return onehot.t().reshape(1, self.frame_buckets, t, 1)

    def features(self, x: Tensor) -> Tensor:
        n, m = self.check_input(x)
        t = x.shape[2]
        velocity = temporal_difference(x, 1)
        z = self.position_embed(self.data_bn(x)) + self.velocity_embed(self.velocity_bn(velocity))
        joints = self.joint_embed(self.joint_onehot.to(z.dtype)).expand(z.shape[0], -1, t, -1)
        z = torch.cat([z, joints], dim=1)
        graph = self.attention(z)
        for layer in self.gcn:
            z = layer(z, graph)
        z = z + self.frame_embed(self._frame_onehot(t, z))
        z = z.amax(dim=3, keepdim=True)  # joints -> one frame-level vector
        z = self.expand(self.tcn(z))
        return z.amax(dim=(2, 3)).view(n, m, -1).mean(dim=1)


@register_model
def esgn(num_classes: int = 60, layout: str | Layout = "ntu25", in_channels: int = 3, num_persons: int = 2,
         dropout: float = 0.0, frame_buckets: int = 20) -> ESGN:
    """Light semantics-guided GCN (joint/frame semantics, attention graph, multi-scale TCN)."""
    return ESGN(num_classes=num_classes, layout=layout, in_channels=in_channels, num_persons=num_persons,
                dropout=dropout, frame_buckets=frame_buckets)
