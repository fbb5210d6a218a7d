"""Every registered model's fused form rebuilds from create_model + fuse and loads its
safetensors weights exactly; compacted sparse forms too, from the recorded sizes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from skelray.export._structure import build_structure, load_state, state_tensors, structure_overrides
from skelray.export.manifest import BundleError, ModelSpec
from skelray.models import carries_masks, create_model, inference_form, list_models

SPEC = {"num_classes": 5, "layout": "kinect_v1_20", "in_channels": 3, "num_persons": 2}
# The ensemble of sparse backbones on its smallest backbone, to keep the test quick.
KWARGS = {"sparse_ensemble": {"backbone": "esgn", "levels": [0.5, 0.9]}}


def trained_like(name: str) -> torch.nn.Module:
    """A model whose BN statistics and weights are not at their initial values, so that a
    fusion which ignored them would show."""
    torch.manual_seed(0)
    model = create_model(name, **SPEC, **KWARGS.get(name, {}))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def roundtrip(fused: torch.nn.Module, spec: ModelSpec, path, *, compacted: bool = False) -> torch.nn.Module:
    save_file(state_tensors(fused), str(path))
    overrides = structure_overrides(build_structure(spec), fused) if compacted else None
    return load_state(build_structure(spec), load_file(str(path)), where=str(path), allow_reshape=compacted,
                      overrides=overrides)


@pytest.mark.parametrize("name", list_models())
def test_fused_weights_load_into_a_fresh_structure(name, tmp_path):
    model = trained_like(name)
    fused = inference_form(model)
    spec = ModelSpec(name=name, kwargs=KWARGS.get(name, {}), **SPEC)
    loaded = roundtrip(fused, spec, tmp_path / "m.safetensors", compacted=carries_masks(model))
    x = torch.randn(3, 2, 12, 20, 3)
    with torch.inference_mode():
        assert torch.equal(loaded(x), fused(x))  # same structure, same weights: bit for bit
        assert (loaded(x) - model(x)).abs().max() < 1e-4


@pytest.mark.parametrize("name", ["hpigcn_rp", "stgcn", "esgn"])  # hpigcn_op: same blocks as rp
def test_compacted_channel_sparse_members_load_with_their_sizes(name, tmp_path):
    from skelray import sparsity

    torch.manual_seed(0)
    sparse = sparsity.sparsify(create_model(name, **SPEC), 0.5, granularity="channel").eval()
    fused = inference_form(sparse)
    spec = ModelSpec(name=name, **SPEC)
    dense_shapes = {k: v.shape for k, v in build_structure(spec).state_dict().items()}
    shrunk = [k for k, v in fused.state_dict().items() if v.shape != dense_shapes[k]]
    loaded = roundtrip(fused, spec, tmp_path / "m.safetensors", compacted=True)
    x = torch.randn(2, 2, 12, 20, 3)
    with torch.inference_mode():
        assert (loaded(x) - sparse(x)).abs().max() < 1e-4
    if name != "esgn":  # esgn's channel masks leave no whole channel empty at this level
        assert shrunk, "compaction removed no channel: the test would not exercise reshaping"
        with pytest.raises(BundleError, match=f"tensor '{shrunk[0]}' has shape"):
            load_state(build_structure(spec), load_file(str(tmp_path / "m.safetensors")),
                       where="m.safetensors",
                       allow_reshape=False)


def test_wrong_tensor_names_are_reported(tmp_path):
    spec = ModelSpec(name="hpigcn_rp", **SPEC)
    tensors = state_tensors(build_structure(spec))
    tensors["extra.weight"] = tensors.pop("head.weight")
    with pytest.raises(BundleError, match=r"missing head.weight; unexpected extra.weight.*re-export"):
        load_state(build_structure(spec), tensors, where="m.safetensors", allow_reshape=False)
