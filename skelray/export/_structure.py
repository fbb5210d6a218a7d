"""Rebuild a member's fused module without its training weights, and fill it from safetensors.

``create_model(...)`` then ``fuse(...)`` on fresh weights gives exactly the module tree the
fused, trained model has (fusing changes structure, never depends on weight values), so the
exported state_dict loads into it strictly. A compacted structured-sparse member has fewer
channels than ``create_model`` gives: there each tensor whose shape differs is replaced by one
of the stored shape, and the size attributes the compaction changed (``out_channels`` of a
conv or of a block that reshapes by it) are recorded at export as plain numbers
(``structure_overrides``) and set again on load. The export check runs the module rebuilt this
way, so a model whose compacted form this cannot rebuild fails at export, never at serving.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from skelray.export.manifest import BundleError, ModelSpec


def build_structure(spec: ModelSpec) -> nn.Module:
    """The inference-form module tree of ``spec``'s model, with untrained weights: the same
    ``inference_form`` export applied (fuse; compact first for a model that is sparse as
    created, such as ``sparse_ensemble``)."""
    from skelray.models import create_model, inference_form

    # Seeded: a model that is sparse as created compacts its fresh masks, and export and load
    # must get the same tree for the recorded size overrides to apply.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model(spec.name, num_classes=spec.num_classes, layout=spec.layout,
                             in_channels=spec.in_channels, num_persons=spec.num_persons, **spec.kwargs)
        return inference_form(model.eval())


def state_tensors(module: nn.Module) -> dict[str, Tensor]:
    """The state_dict as independent contiguous CPU tensors: safetensors refuses shared storage,
    and blocks may share one buffer (the layout's graph)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def _plain(value: object) -> bool:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return True
    return isinstance(value, (tuple, list)) and all(isinstance(v, (bool, int, float)) for v in value)


def _attributes(module: nn.Module) -> dict[str, dict[str, object]]:
    return {name: {k: v for k, v in vars(sub).items()
                   if not k.startswith("_") and k != "training" and _plain(v)}
            for name, sub in module.named_modules()}


def structure_overrides(fresh: nn.Module, actual: nn.Module) -> dict[str, dict[str, object]]:
    """The plain attributes (sizes) of ``actual``'s modules that differ from ``fresh``'s, by
    module path; empty for every dense member."""
    before, after = _attributes(fresh), _attributes(actual)
    out: dict[str, dict[str, object]] = {}
    for name, attrs in after.items():
        changed = {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.items()
                   if name in before and k in before[name] and before[name][k] != v}
        if changed:
            out[name] = changed
    return out


def _apply_overrides(module: nn.Module, overrides: Mapping[str, Mapping[str, object]], where: str) -> None:
    for path, attrs in overrides.items():
        try:
            sub = module.get_submodule(path) if path else module
        except AttributeError:
            raise BundleError(f"structure names a module '{path}' the model does not have", where=where,
                              fix="re-export the bundle with this skelray version") from None
        for key, value in attrs.items():
            current = getattr(sub, key, None)
            setattr(sub, key,
                    tuple(value) if isinstance(current, tuple) and isinstance(value, list) else value)


def _adopt_shapes(module: nn.Module, shapes: Mapping[str, torch.Size]) -> None:
    for name, shape in shapes.items():
        path, _, attr = name.rpartition(".")
        owner = module.get_submodule(path) if path else module
        old = getattr(owner, attr)
        if isinstance(old, nn.Parameter):
            setattr(owner, attr, nn.Parameter(torch.empty(shape, dtype=old.dtype), requires_grad=False))
        else:
            owner.register_buffer(attr, torch.empty(shape, dtype=old.dtype))


def load_state(module: nn.Module, tensors: Mapping[str, Tensor], *, where: str, allow_reshape: bool,
               overrides: Mapping[str, Mapping[str, object]] | None = None) -> nn.Module:
    """Load ``tensors`` into ``module`` strictly; a name or shape mismatch names the tensor.
    ``allow_reshape`` (compacted members) adopts the stored shapes and sets ``overrides``."""
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
    if allow_reshape and overrides:
        _apply_overrides(module, overrides, where)
    module.load_state_dict(dict(tensors), strict=True)
    return module.eval()
