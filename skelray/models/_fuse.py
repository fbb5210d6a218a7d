"""Re-parameterization: turn a trained model into its single-branch inference form.

The convention is duck-typed, as in timm's ``reparameterize_model``: ``fuse`` walks the
modules of a copy of the model and asks every module that has a ``fuse()`` method to return
its replacement (it may return itself, changed in place). Nothing here knows any block's
branches; the helpers below are the exact algebra blocks use to fold themselves.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def fuse(model: nn.Module) -> nn.Module:
    """A deep-copied, eval-mode inference form of ``model`` with every fusable block folded.

    The input model is left untouched. A model with no fusable block comes back as an
    eval-mode copy, and fusing a fused model changes nothing (blocks fuse idempotently).
    Convs are read through their ``.weight``; a model that carries weight masks goes through
    ``inference_form`` instead, which compacts it (bakes the masks, cuts empty channels) first.
    """
    fused = copy.deepcopy(model).eval()
    with torch.no_grad():
        fused = _fuse_module(fused)
    return fused.eval()


def is_fusable(model: nn.Module) -> bool:
    """Whether any module in ``model`` knows how to fuse itself."""
    return any(_has_fuse(m) for m in model.modules())


def _has_fuse(module: nn.Module) -> bool:
    return callable(getattr(module, "fuse", None))


def _fuse_module(module: nn.Module) -> nn.Module:
    # A fusable block owns everything below it, so its children are not visited separately.
    if _has_fuse(module):
        return module.fuse()  # type: ignore[operator]
    for name, child in list(module.named_children()):
        new = _fuse_module(child)
        if new is not child:
            setattr(module, name, new)
    return module


# ---- the exact algebra ------------------------------------------------------------------


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """Eval-mode BN as ``y = x * scale + shift`` per channel."""
    assert bn.running_var is not None and bn.running_mean is not None, "BN needs running statistics"
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn.running_mean * scale


def fold_bn(weight: Tensor, bias: Tensor | None,
            bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """Fold an eval-mode BN that follows a conv (weight (O, ...), bias (O,) or None) into it."""
    scale, shift = bn_scale_shift(bn)
    w = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    b = shift if bias is None else bias * scale + shift
    return w, b


def pad_temporal(weight: Tensor, size: int) -> Tensor:
    """Zero-pad a ``(O, I, k, 1)`` kernel to ``(O, I, size, 1)`` about its centre.

    Exact when both convs use padding ``(k - 1) // 2`` and ``(size - 1) // 2`` with the same
    stride: every output then reads the same input frames through the same taps.
    """
    k = weight.shape[2]
    extra = size - k
    assert extra >= 0 and extra % 2 == 0, f"cannot centre a {k}-tap kernel in {size} taps"
    return F.pad(weight, (0, 0, extra // 2, extra // 2))


def merge_serial(w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None) -> tuple[Tensor, Tensor]:
    """A 1x1 conv ``(M, I, 1, 1)`` followed by a ``(O, M, k, 1)`` conv, as one ``(O, I, k, 1)``.

    Exact only if the second conv sees the first one's output padded with ``b1`` (the first
    conv's response to the zero padding of its own input); the serial branches pad that way.
    """
    w = torch.einsum("omkv,mi->oikv", w2, w1[:, :, 0, 0])
    b = torch.zeros(w2.shape[0], dtype=w2.dtype, device=w2.device) if b2 is None else b2.clone()
    if b1 is not None:
        b = b + torch.einsum("omkv,m->o", w2, b1)
    return w, b


def avg_pool_kernel(channels: int, size: int, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Tensor:
    """A ``size``x1 average pool as a depthwise-diagonal conv kernel ``(C, C, size, 1)``.

    Equal to ``AvgPool2d`` that divides by ``size`` everywhere (``count_include_pad=True``).
    """
    w = torch.zeros(channels, channels, size, 1, dtype=dtype, device=device)
    idx = torch.arange(channels, device=device)
    w[idx, idx, :, 0] = 1.0 / size
    return w


def conv_like(conv: nn.Conv2d, weight: Tensor, bias: Tensor | None, *, padding: tuple[int, int] | None = None
              ) -> nn.Conv2d:
    """A new conv with ``conv``'s geometry (stride, dilation, groups) and the given weights."""
    out_c, in_per_group = weight.shape[:2]
    new = nn.Conv2d(in_per_group * conv.groups, out_c, tuple(weight.shape[2:]), stride=conv.stride,
                    padding=padding if padding is not None else conv.padding, dilation=conv.dilation,
                    groups=conv.groups, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    new.weight.data.copy_(weight)
    if bias is not None:
        new.bias.data.copy_(bias)
    return new
