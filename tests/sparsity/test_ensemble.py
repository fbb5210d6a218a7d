"""``MultiLevelEnsemble`` / the registered ``sparse_ensemble``: members at their levels, the two
ways of combining, member losses, re-masking by the trial, fusing and checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skelray.errors import ConfigError
from skelray.models import create_model, fuse, list_models, model_options, profile
from skelray.sparsity import MultiLevelEnsemble, on_epoch_start, penalty, report, sparsify

KWARGS = dict(num_classes=4, layout="kinect_v1_20", num_persons=1)


def member_sparsity(model: MultiLevelEnsemble) -> list[float]:
    return [report(m, macs=False)["overall"] for m in model.members]


def test_registered_by_name_with_the_backbones_options() -> None:
    assert "sparse_ensemble" in list_models()
    own = ("num_classes", "layout", "in_channels", "num_persons", "dropout", "backbone", "levels",
           "combine", "member_loss", "granularity", "scope", "mirror_tta")
    # Its own options plus those of the backbone: the default one (hpigcn_rp), or the one named.
    options = model_options("sparse_ensemble")
    for key in (*own, "pa_count", "tcn_kernel"):
        assert key in options, key
    assert set(model_options("sparse_ensemble", backbone="stgcn")) == {*own, "edge_importance", "width"}
    assert "edge_importance" not in options and "pa_count" not in model_options("sparse_ensemble",
                                                                                backbone="stgcn")
    model = create_model("sparse_ensemble", backbone="stgcn", levels=[0.5, 0.9], edge_importance=False,
                         **KWARGS)
    assert isinstance(model, MultiLevelEnsemble) and len(model.members) == 2
    assert all(block.importance is None for block in model.members[0].blocks)
    assert member_sparsity(model) == pytest.approx([0.5, 0.9], abs=0.005)


def test_feature_combining_averages_features_before_one_head(clips) -> None:
    torch.manual_seed(0)
    model = create_model("sparse_ensemble", backbone="stgcn", levels=[0.6, 0.95], **KWARGS).eval()
    x = clips(3, 5)
    assert not any(isinstance(m.head, nn.Linear) for m in model.members)  # one shared head only
    with torch.no_grad():
        feats = torch.stack([m.features(x) for m in model.members]).mean(dim=0)
        torch.testing.assert_close(model.features(x), feats)
        torch.testing.assert_close(model(x), model.head(feats))


def test_logit_combining_averages_each_members_own_logits(clips) -> None:
    torch.manual_seed(0)
    model = create_model("sparse_ensemble", backbone="stgcn", levels=[0.6, 0.95], combine="logits",
                         **KWARGS).eval()
    x = clips(3, 5)
    with torch.no_grad():
        want = torch.stack([m(x) for m in model.members]).mean(dim=0)
        torch.testing.assert_close(model(x), want)


def test_member_losses_reach_the_trainer_through_penalty(clips) -> None:
    torch.manual_seed(0)
    model = create_model("sparse_ensemble", backbone="stgcn", levels=[0.6, 0.95], **KWARGS).train()
    x, y = clips(4, 5), torch.arange(4)
    model(x)
    members = model.member_losses(y)
    assert members.item() > 0
    assert (penalty(model, y) - penalty(model)).item() == pytest.approx(members.item())
    members.backward()  # each member's own prediction trains that member
    for member in model.members:
        assert member.blocks[0].gcn.parametrizations.weight.original.grad.abs().sum() > 0
    off = create_model("sparse_ensemble", backbone="stgcn", levels=[0.6, 0.95], member_loss=False, **KWARGS)
    off.train()(x)
    assert penalty(off, y).item() == 0.0


def test_the_trial_remasks_members_with_its_configuration_and_a_checkpoint_loads(fresh, clips,
                                                                                sgd_steps) -> None:
    # What the trial does (create, then sparsify with level=None) and what model_from_checkpoint
    # does (the same into fresh weights, then load_state_dict).
    config = dict(granularity="channel", scope="block", schedule={"warmup_epochs": 1, "ramp_epochs": 1})

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = create_model("sparse_ensemble", backbone="hpigcn_rp", levels=[0.5, 0.9], pa_count=1, **KWARGS)
        return sparsify(model, None, **config)

    model = build(0)
    assert member_sparsity(model) == [0.0, 0.0]  # warm-up
    on_epoch_start(model, 1)
    assert member_sparsity(model) == pytest.approx([0.5, 0.9], abs=0.005)
    x = clips(4, 4)
    sgd_steps(model, x, steps=1)
    loaded = build(1)
    loaded.load_state_dict(model.state_dict())
    model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    # Member-wise fuse (masks baked, empty channels cut) gives the same logits, smaller.
    deployed = fuse(model)
    with torch.no_grad():
        scale = 4.0 / model(x).abs().max()
        assert ((deployed(x) - model(x)) * scale).abs().max().item() <= 1e-4
    shape = (1, 1, 8, 20, 3)
    one_dense = profile(fuse(fresh("hpigcn_rp")), shape)
    assert profile(deployed, shape)[1] < 0.6 * 2 * one_dense[1]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"levels": []}, "sparse_ensemble.levels"),
    ({"levels": [0.5, 1.2]}, "sparse_ensemble.levels"),
    ({"levels": 0.9}, "sparse_ensemble.levels"),
    ({"combine": "mean"}, "sparse_ensemble.combine"),
    ({"backbone": "sparse_ensemble"}, "sparse_ensemble.backbone"),
    ({"pa_cuont": 2}, "pa_count"),
])
def test_bad_ensemble_options_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        create_model("sparse_ensemble", **{**KWARGS, **kwargs})


def test_options_are_checked_against_the_named_backbone() -> None:
    # pa_count is an option of the default backbone, not of stgcn: the ensemble itself says so.
    with pytest.raises(ConfigError, match=r"unknown option 'pa_count' for model 'sparse_ensemble'.*"
                                          r"takes .*edge_importance"):
        create_model("sparse_ensemble", backbone="stgcn", pa_count=1, **KWARGS)
    with pytest.raises(ConfigError, match=r"sparse_ensemble\.backbone.*unknown model 'stgnc'.*'stgcn'"):
        model_options("sparse_ensemble", backbone="stgnc")
    with pytest.raises(ConfigError, match=r"sparse_ensemble\.backbone.*must be a model name"):
        model_options("sparse_ensemble", backbone=3)


def test_an_ensemble_takes_no_single_level() -> None:
    model = create_model("sparse_ensemble", backbone="stgcn", levels=[0.5, 0.9], **KWARGS)
    with pytest.raises(ConfigError, match=r"sparsity\.level.*level: null"):
        sparsify(model, 0.9)
    with pytest.raises(ConfigError, match="1 levels for 2 members"):
        sparsify(model, [0.7])
    sparsify(model, [0.7, 0.8], granularity="kernel")
    assert member_sparsity(model) == pytest.approx([0.7, 0.8], abs=0.005)


def test_inference_form_keeps_every_members_features_when_an_inner_channel_is_cut(clips) -> None:
    # What trials measure and export ships: compact(ensemble), then fuse. A member whose last
    # segment's first block lost inner channels once came out with narrower features (fuse
    # compacted it a second time, and a second compaction cut the block's output), so the
    # shared head could not average them.
    from skelray.models import inference_form

    torch.manual_seed(0)
    model = create_model("sparse_ensemble", backbone="hpigcn_rp", levels=[0.5, 0.9], pa_count=1, **KWARGS).eval()
    bn = model.members[1].blocks[-3].gcn.conv_out.bn  # the block that opens the last segment
    bn.weight.data[:40] = 0.0
    bn.bias.data[:40] = 0.0
    deployed = inference_form(model)
    x = clips(3, 8)
    with torch.no_grad():
        want = model(x)
        scale = 4.0 / want.abs().max()
        assert ((deployed(x) - want) * scale).abs().max().item() <= 1e-4
    widths = [m.blocks[-1].tcn.out_channels for m in deployed.members]
    assert widths == [model.members[0].feat_dim] * 2
