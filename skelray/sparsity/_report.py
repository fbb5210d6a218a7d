"""``report``: what a sparse model has actually pruned, and what it would cost to run."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from skelray.sparsity._ctf import CTFMask, CTFState
from skelray.sparsity._masks import ScoreMask, SparseState

_MASKS = (ScoreMask, CTFMask)


def _weight_mask(module: nn.Module) -> nn.Module | None:
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations["weight"]:
            if isinstance(p, _MASKS):
                return p
    return None


@torch.no_grad()
def report(model: nn.Module, input_shape: tuple[int, ...] | None = None, *,
           macs: bool = True) -> dict[str, Any]:
    """Achieved sparsity and the costs that follow from it.

    Returns ``overall`` (fraction of the masked weights pruned), ``layers`` (that fraction per
    masked layer, by module name), ``levels`` (each network's current level, or kept budget for
    CTF), ``params`` and ``nonzero_params`` (the deployable parameters, scores and mask logits
    not counted, and how many of them are non-zero once masked), and ``macs`` and
    ``effective_macs`` for one forward on ``input_shape`` (default: one clip of 64 frames),
    where a masked layer costs only its non-zero weights (what a sparse kernel could skip).
    ``macs=False`` skips that forward pass (both are then None).
    """
    layers: dict[str, float] = {}
    kept_total = masked_total = 0
    for name, module in model.named_modules():
        mask = _weight_mask(module)
        if mask is not None:
            kept, total = mask.kept_fraction()
            layers[name] = 1.0 - kept / total
            kept_total, masked_total = kept_total + kept, masked_total + total
    params = nonzero = 0
    for module in model.modules():
        if isinstance(module, (parametrize.ParametrizationList, *_MASKS)):
            continue  # scores, logits and the originals behind a mask are counted via the module
        names = list(module._parameters)
        if parametrize.is_parametrized(module):
            names += list(module.parametrizations.keys())
        for pname in names:
            t = getattr(module, pname)
            if t is not None:
                params += t.numel()
                nonzero += int(torch.count_nonzero(t))
    levels = {name: float(m.level) for name, m in model.named_modules() if isinstance(m, SparseState)}
    levels.update({name: 1.0 - m.budget for name, m in model.named_modules() if isinstance(m, CTFState)})
    out: dict[str, Any] = {
        "overall": 1.0 - kept_total / masked_total if masked_total else 0.0,
        "layers": layers,
        "levels": levels,
        "params": params,
        "nonzero_params": nonzero,
        "macs": None,
        "effective_macs": None,
    }
    shape = input_shape or _default_shape(model)
    if macs and shape is not None:
        out["macs"], out["effective_macs"] = _macs(model, shape)
    return out


def _default_shape(model: nn.Module) -> tuple[int, ...] | None:
    try:
        return (1, int(model.num_persons), 64, int(model.num_joints), int(model.in_channels))
    except AttributeError:
        return None


def _macs(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """Dense MACs from ``profile``, and the same with masked layers at their non-zero count."""
    from skelray.models import profile

    saved = 0
    nnz = {id(m): int(torch.count_nonzero(m.weight)) for m in model.modules() if _weight_mask(m) is not None}

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal saved
        positions = output.numel() // output.shape[1 if output.dim() > 2 else -1]
        # Dense: every output position reads all weights of its channel; sparse: only the
        # non-zero ones, so the whole layer costs positions * nnz(W).
        dense = positions * module.weight.numel()
        saved += dense - positions * nnz[id(module)]

    handles = [m.register_forward_hook(hook) for m in model.modules() if id(m) in nnz]
    try:
        _, macs = profile(model, shape)
    finally:
        for h in handles:
            h.remove()
    return macs, macs - saved
