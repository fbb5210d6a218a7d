"""Coarse-to-fine pruning: the budget is met, the masks end crisp, gradients reach every
factor, the schedule anneals, and channel factors compact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skelray.errors import ConfigError
from skelray.models import profile
from skelray.sparsity import anneal, compact, ctf, ctf_loss, on_epoch_start, penalty, report, sparsify
from skelray.sparsity._ctf import CTFMask


class TinyNet(nn.Module):
    """Three convs with BN, enough for CTF's dynamics in a few hundred steps of a second each."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            nn.Conv2d(3, 32, 1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, (5, 1), padding=(2, 0)), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 1))
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).mean(dim=(2, 3)))


def ctf_masks(model: nn.Module) -> list[CTFMask]:
    return [m for m in model.modules() if isinstance(m, CTFMask)]


def test_ctf_reaches_its_budget_and_its_masks_end_binary() -> None:
    torch.manual_seed(0)  # seeds 0-7 all pass; one is enough to run every time
    model = ctf(TinyNet(), budget=0.1)
    x, y = torch.randn(64, 3, 8, 5), torch.randint(0, 4, (64,))
    # The mask logits need a larger step than the weights to cross 0 before the annealing
    # freezes them, as a trainer would give them through a parameter group.
    logits = [p for n, p in model.named_parameters() if "score" in n]
    weights = [p for n, p in model.named_parameters() if "score" not in n]
    opt = torch.optim.Adam([{"params": logits, "lr": 0.05}, {"params": weights, "lr": 0.005}])
    steps = 200
    first_loss, before_cut = None, []
    for step in range(steps):
        anneal(model, min(1.0, step / (0.7 * steps)))  # then train on with the crisp masks
        task = nn.functional.cross_entropy(model(x), y)
        first_loss = first_loss if first_loss is not None else task.item()
        opt.zero_grad()
        (task + ctf_loss(model)).backward()
        opt.step()
        if 0.5 * steps <= step < 0.7 * steps:  # still annealing: the budget term alone holds the count
            before_cut.append(1.0 - report(model, macs=False)["overall"])
    # From all connections on, the budget term brought the count to around the budget (it
    # dithers from step to step; the crisp phase's cut then meets it exactly).
    assert abs(sum(before_cut) / len(before_cut) - 0.1) <= 0.05, before_cut
    masks = [m.full_mask().detach() for m in ctf_masks(model)]
    values = torch.cat([m.flatten() for m in masks])
    assert ((values == 0) | (values == 1)).all(), "masks are not crisp"
    kept = values.double().mean().item()
    assert abs(kept - 0.1) <= 0.001, kept  # within 1% of the budget
    assert abs(report(model, macs=False)["overall"] - (1 - kept)) < 1e-9  # report counts the same
    # Coarse and fine both used: whole filters went, and inside kept filters single weights.
    channels = torch.cat([(m.score_channel > 0) for m in ctf_masks(model)])
    assert 0 < channels.float().mean() < 1
    kept_filters = torch.cat([m.flatten(1)[m.flatten(1).any(dim=1)].flatten() for m in masks])
    assert 0 < kept_filters.mean() < 1
    with torch.no_grad():
        assert nn.functional.cross_entropy(model(x), y).item() < first_loss  # it still learned


def test_ctf_schedule_gradients_and_compaction_on_hpigcn(fresh, clips) -> None:
    model = sparsify(fresh("hpigcn_rp"), 0.9, granularity="ctf",
                     schedule={"warmup_epochs": 1, "ramp_epochs": 2})
    state = model.ctf_state
    x = clips(2, 4)
    on_epoch_start(model, 0)  # warm-up: no budget pressure, the start temperature
    assert penalty(model).item() == 0.0 and float(state.temperature) == 1.0
    on_epoch_start(model, 1)
    assert float(state.temperature) == pytest.approx(1e-3 ** 0.5)
    loss = nn.functional.cross_entropy(model.train()(x), torch.arange(2)) + penalty(model)
    assert penalty(model).item() > 0
    loss.backward()
    for mask in ctf_masks(model):
        for name in ("score_channel", "score_column", "score_row", "score_entry"):
            grad = getattr(mask, name).grad
            assert grad is not None and grad.abs().sum() > 0, name
    on_epoch_start(model, 2)  # the ramp's end: crisp masks
    assert float(state.temperature) == pytest.approx(1e-3)
    values = torch.cat([m.full_mask().detach().flatten() for m in ctf_masks(model)])
    assert ((values == 0) | (values == 1)).all()
    # Switch off a third of every filter's channel factors: the bias and the BN after them go
    # to zero too, so compact() can cut those channels and still compute the same.
    with torch.no_grad():
        for mask in ctf_masks(model):
            mask.score_channel[::3] = -1.0
    model.eval()
    small = compact(model)
    with torch.no_grad():
        scale = 4.0 / model.features(x).abs().max()
        gap = ((model.features(x) - small.features(x)) * scale).abs().max().item()
    assert gap <= 1e-4
    shape = (1, 1, 8, 20, 3)
    assert profile(small, shape)[0] < 0.8 * profile(fresh("hpigcn_rp"), shape)[0]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"budget": 0.0}, "ctf.budget"),
    ({"budget": 1.5}, "ctf.budget"),
    ({"budget": 0.1, "temperature": (0.001, 1.0)}, "ctf.temperature"),
])
def test_bad_ctf_settings_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        ctf(TinyNet(), **kwargs)
