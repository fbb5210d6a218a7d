"""Scores learn through the straight-through estimator; the schedule, the penalty, and a
checkpoint round trip."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from skelray.models import create_model
from skelray.sparsity import on_epoch_start, penalty, report, sparsify
from skelray.sparsity._masks import ScoreMask


def score_masks(model: nn.Module) -> list[ScoreMask]:
    return [m for m in model.modules() if isinstance(m, ScoreMask)]


def test_scores_get_gradients_and_the_mask_changes_while_training(fresh, clips, sgd_steps) -> None:
    model = sparsify(fresh("hpigcn_rp"), 0.9)
    x = clips(4, 4)
    masks = score_masks(model)
    before = torch.cat([m.keep().flatten() for m in masks])
    nn.functional.cross_entropy(model.train()(x), torch.arange(4)).backward()
    for m in masks:
        assert m.score.grad is not None and m.score.grad.abs().sum() > 0
    sgd_steps(model, x, steps=2, lr=0.5)
    after = torch.cat([m.keep().flatten() for m in masks])
    flipped = int((before != after).sum())
    assert flipped > 0, "no weight changed side of the threshold"
    assert abs(report(model, macs=False)["overall"] - 0.9) <= 0.005  # still at the level


@pytest.mark.parametrize(("schedule", "fractions"), [
    ({"warmup_epochs": 2, "ramp_epochs": 3}, [0, 0, 1 / 3, 2 / 3, 1, 1, 1]),
    ({"warmup_epochs": 2, "ramp_epochs": 3, "kind": "step"}, [0, 0, 0, 0, 1, 1, 1]),
    ({"warmup_epochs": 1, "ramp_epochs": 4, "kind": "step", "steps": 2}, [0, 0, 0.5, 0.5, 1, 1, 1]),
    ({"warmup_epochs": 0, "ramp_epochs": 0}, [1, 1, 1, 1, 1, 1, 1]),
])
def test_schedule_is_dense_in_warm_up_then_ramps_to_the_target(fresh, schedule: dict,
                                                               fractions: list) -> None:
    model = sparsify(fresh("stgcn"), 0.8, granularity="channel", schedule=schedule)
    achieved = []
    for epoch in range(len(fractions)):
        on_epoch_start(model, epoch)
        achieved.append(report(model, macs=False)["overall"])
    for got, fraction in zip(achieved, fractions):
        assert abs(got - 0.8 * fraction) <= 0.005, achieved


def test_penalty_is_zero_when_off_and_pulls_only_on_weights_about_to_go(fresh) -> None:
    off = sparsify(fresh("stgcn"), 0.8, schedule={"warmup_epochs": 1, "ramp_epochs": 2})
    on_epoch_start(off, 1)
    assert penalty(off).item() == 0.0
    model = sparsify(fresh("stgcn"), 0.8, schedule={"warmup_epochs": 1, "ramp_epochs": 2, "penalty": 0.01})
    on_epoch_start(model, 0)
    assert penalty(model).item() == 0.0  # warm-up
    on_epoch_start(model, 1)  # half-way: level 0.4, target 0.8
    mid = penalty(model)
    assert mid.item() > 0
    mid.backward()
    mask = score_masks(model)[3]
    weight = mask._module.parametrizations["weight"].original
    doomed = (mask.score <= model.sparse_state.threshold(mask.group, at_target=True)) & mask.keep()
    assert doomed.any() and (weight.grad[doomed] != 0).all() and (weight.grad[~doomed] == 0).all()
    on_epoch_start(model, 2)  # at the target: nothing is left about to go
    assert penalty(model).item() == 0.0


def test_checkpoint_round_trip_into_a_fresh_sparsified_model(clips, sgd_steps) -> None:
    config = dict(granularity="channel", scope="block", schedule={"warmup_epochs": 1, "ramp_epochs": 2})
    kwargs = dict(num_classes=4, layout="kinect_v1_20", num_persons=1, pa_count=1)
    torch.manual_seed(0)
    model = sparsify(create_model("hpigcn_rp", **kwargs), 0.9, **config)
    on_epoch_start(model, 1)  # mid-ramp; a fresh model starts dense (warm-up)
    x = clips(4, 6)
    sgd_steps(model, x, steps=1)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)  # as the trial does
    buffer.seek(0)
    torch.manual_seed(1)  # different starting weights and scores
    fresh_model = sparsify(create_model("hpigcn_rp", **kwargs), 0.9, **config)
    assert report(fresh_model, macs=False)["overall"] == 0.0
    fresh_model.load_state_dict(torch.load(buffer, weights_only=True))
    model.eval(), fresh_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh_model(x), model(x), rtol=0, atol=0)
    assert report(fresh_model, macs=False)["overall"] == pytest.approx(0.45, abs=0.005)
