"""Rebuild a member's fused module without its training weights, and fill it from safetensors.

``create_model(...)`` then ``fuse(...)`` on fresh weights gives exactly the module tree the
fused, trained model has (fusing changes structure, never depends on weight values), so the
exported state_dict loads into it strictly. A compacted structured-sparse member has fewer
channels than ``create_model`` gives: there each tensor whose shape differs is replaced by one
of the stored shape and the layer's size attributes follow; forward passes read sizes from
the tensors, so the smaller layers then run as they did at export.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from skelray.export.manifest import BundleError, ModelSpec


def build_structure(spec: ModelSpec) -> nn.Module:
    """The fused module tree of ``spec``'s model, with untrained weights."""
    from skelray.models import create_model, fuse

    model = create_model(spec.name, num_classes=spec.num_classes, layout=spec.layout,
                         in_channels=spec.in_channels, num_persons=spec.num_persons, **spec.kwargs)
    return fuse(model)


def state_tensors(module: nn.Module) -> dict[str, Tensor]:
    """The state_dict as independent contiguous CPU tensors: safetensors refuses shared storage,
    and blocks may share one buffer (the layout's graph)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def _adopt_shapes(module: nn.Module, shapes: Mapping[str, torch.Size]) -> None:
    for name, shape in shapes.items():
        path, _, attr = name.rpartition(".")
        owner = module.get_submodule(path) if path else module
        old = getattr(owner, attr)
        if isinstance(old, nn.Parameter):
            setattr(owner, attr, nn.Parameter(torch.empty(shape, dtype=old.dtype), requires_grad=False))
        else:
            owner.register_buffer(attr, torch.empty(shape, dtype=old.dtype))
        # Keep the size attributes honest: repr, profile() and later code read them.
        if isinstance(owner, nn.modules.conv._ConvNd) and attr == "weight":
            owner.out_channels, owner.in_channels = shape[0], shape[1] * owner.groups
        elif isinstance(owner, nn.Linear) and attr == "weight":
            owner.out_features, owner.in_features = shape[0], shape[1]
        elif isinstance(owner, nn.modules.batchnorm._BatchNorm) and attr in ("weight", "running_mean"):
            owner.num_features = shape[0]


def load_state(module: nn.Module, tensors: Mapping[str, Tensor], *, where: str, allow_reshape: bool) -> nn.Module:
    """Load ``tensors`` into ``module`` strictly; a name or shape mismatch names the tensor."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        raise BundleError(f"tensors do not match the model's fused form ({'; '.join(parts)})", where=where,
                          fix="re-export the bundle with this skelray version (the model code changed since)")
    differ = {k: tensors[k].shape for k in expected if tuple(tensors[k].shape) != tuple(expected[k].shape)}
    if differ and not allow_reshape:
        k = next(iter(differ))
        raise BundleError(f"tensor '{k}' has shape {tuple(tensors[k].shape)}, the model expects "
                          f"{tuple(expected[k].shape)}", where=where,
                          fix="the manifest's model kwargs do not match these weights: re-export the bundle")
    if differ:
        _adopt_shapes(module, differ)
    module.load_state_dict(dict(tensors), strict=True)
    return module.eval()
