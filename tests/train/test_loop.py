"""The training loop's optimiser: which parameters are decayed."""

from __future__ import annotations

import pytest
import torch

from skelray.models import create_model
from skelray.train.loop import make_optimizer, no_decay_names


def _groups(opt: torch.optim.Optimizer) -> tuple[set[int], set[int]]:
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    kept = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    return decayed, kept


@pytest.mark.parametrize(("name", "adjacency", "kwargs"), [
    ("hpigcn_rp", "pa", {"pa_count": 3}),
    ("hpigcn_op", "pa", {}),
    ("stgcn", "importance", {}),
])
def test_adjacency_gets_no_weight_decay(name: str, adjacency: str, kwargs: dict) -> None:
    model = create_model(name, num_classes=5, layout="ntu25", width=0.25, **kwargs)
    named = dict(model.named_parameters())
    adj = [n for n in named if n.rsplit(".", 1)[-1] == adjacency]
    assert adj, f"{name} has no '{adjacency}' parameters"
    decayed, kept = _groups(make_optimizer(model, "sgd", 0.1, weight_decay=4e-4))
    assert all(id(named[n]) in kept for n in adj)
    assert set(adj) <= no_decay_names(model)
    # Conv weights are decayed; biases and norms are not.
    convs = [n for n, p in named.items() if p.ndim == 4 and n not in adj]
    assert convs and all(id(named[n]) in decayed for n in convs)
    assert all(id(p) in kept for p in named.values() if p.ndim <= 1)
    assert len(decayed) + len(kept) == len(named)


def test_mask_scores_get_no_weight_decay() -> None:
    from skelray.sparsity import sparsify

    model = sparsify(create_model("stgcn", num_classes=5, layout="ntu25", width=0.25), 0.5)
    named = dict(model.named_parameters())
    scores = [n for n in named if "score" in n.rsplit(".", 1)[-1]]
    assert scores
    _, kept = _groups(make_optimizer(model, "adamw", 1e-3, weight_decay=1e-2))
    assert all(id(named[n]) in kept for n in scores)


def test_decay_leaves_the_adjacency_alone_in_a_step() -> None:
    """With zero gradients, one SGD step shrinks decayed weights and leaves the adjacency as it is."""
    model = create_model("hpigcn_rp", num_classes=5, layout="ntu25", width=0.25, pa_count=3)
    opt = make_optimizer(model, "sgd", 0.5, momentum=0.0, weight_decay=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        if n.endswith(".pa"):
            torch.testing.assert_close(p.detach(), before[n], rtol=0, atol=0)
        elif p.ndim == 4:
            torch.testing.assert_close(p.detach(), before[n] * 0.95)


# -- PA count and its learning-rate equivalent -----------------------------------------------------
def _pa_model(pa_count: int, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("hpigcn_rp", **{"num_classes": 4, "layout": "kinect_v1_20", "num_persons": 1,
                                        "width": 0.25, "pa_count": pa_count, "pa_noise": 0.0, **kwargs})


def _train(model: torch.nn.Module, adjacency_lr_scale: float, steps: int = 6) -> torch.Tensor:
    from skelray.train.loop import make_schedule

    opt = make_optimizer(model, "sgd", 0.01, momentum=0.9, nesterov=True, weight_decay=4e-4,
                         adjacency_lr_scale=adjacency_lr_scale)
    schedule = make_schedule(opt, kind="cosine", epochs=3, steps_per_epoch=steps // 3, warmup_epochs=1)
    gen = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        x = torch.randn(8, 1, 16, 20, 3, generator=gen, dtype=torch.float64)
        y = torch.randint(0, 4, (8,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        return model(torch.randn(5, 1, 16, 20, 3, generator=gen, dtype=torch.float64))


def _pa1_like(many: torch.nn.Module) -> torch.nn.Module:
    """A PA-1 model whose weights equal ``many``'s, its one matrix per block their sum."""
    one = _pa_model(1).double()
    one.load_state_dict({k: v.sum(0, keepdim=True) if k.endswith(".pa") else v
                         for k, v in many.state_dict().items()})
    return one


@pytest.mark.parametrize("count", [3, 5])
def test_pa_count_is_the_adjacency_learning_rate_times_the_count(count: int) -> None:
    """With no decay on the adjacency, every PA matrix gets the same gradient (the gradient of
    their sum), so a PA-``count`` model trains exactly as a PA-1 model whose adjacency is that
    sum and whose adjacency learning rate is ``count`` times larger (SGD with Nesterov momentum,
    warm-up and cosine schedule). In float64: in float32 the rounding of the summed matrices is
    amplified by a few steps on random batches to 1e-3 at some learning rates."""
    many = _pa_model(count).double()
    # skelray's initialisation without noise: the matrices sum to the graph, and the other
    # weights are those of a PA-1 model from the same seed (nothing else was drawn).
    first = _pa_model(1).double()
    for name, value in first.state_dict().items():
        other = many.state_dict()[name]
        assert torch.allclose(other.sum(0, keepdim=True) if name.endswith(".pa") else other, value, atol=1e-6)
    one, plain = _pa1_like(many), _pa1_like(many)
    out_many, out_scaled, out_plain = _train(many, 1.0), _train(one, float(count)), _train(plain, 1.0)
    gap, control = float((out_many - out_scaled).abs().max()), float((out_many - out_plain).abs().max())
    assert gap < 1e-9, gap
    # The check can fail: PA-1 at the plain learning rate ends elsewhere.
    assert control > 1e-4, control


def test_adjacency_lr_scale_gives_the_adjacency_its_own_group_and_the_schedule_scales_it() -> None:
    from skelray.train.loop import adjacency_names, make_schedule

    model = _pa_model(2)
    opt = make_optimizer(model, "sgd", 0.1, adjacency_lr_scale=3.0)
    adj = adjacency_names(model)
    named = dict(model.named_parameters())
    (group,) = [g for g in opt.param_groups if {id(p) for p in g["params"]} == {id(named[n]) for n in adj}]
    assert group["lr"] == pytest.approx(0.3) and group["weight_decay"] == 0.0
    schedule = make_schedule(opt, kind="cosine", epochs=2, steps_per_epoch=2)
    schedule.step()
    rates = [g["lr"] for g in opt.param_groups]
    assert rates[-1] == pytest.approx(3 * rates[0]) and rates[0] < 0.1
    # At 1 the adjacency stays in the no-decay group: optimiser states saved before still load.
    assert len(make_optimizer(model, "sgd", 0.1).param_groups) == 2


def test_official_pa_init_draws_each_matrix_uniform_around_one() -> None:
    model = _pa_model(3, pa_init="official")
    pa = [p for n, p in model.named_parameters() if n.endswith(".pa")]
    assert pa and all(p.shape[0] == 3 and 0.9 <= float(p.min()) and float(p.max()) <= 1.1 for p in pa)
    assert float(pa[0].std()) > 0.03  # drawn, not constant


@pytest.mark.parametrize(("kwargs", "field"), [({"pa_init": "paper"}, "pa_init"), ({"pa_noise": -1}, "pa_noise")])
def test_bad_pa_options_name_the_field(kwargs: dict, field: str) -> None:
    from skelray.errors import ConfigError

    with pytest.raises(ConfigError, match=field):
        _pa_model(1, **kwargs)


def test_adjacency_lr_scale_must_be_positive() -> None:
    from skelray.config import TrialConfig
    from skelray.errors import ConfigError

    with pytest.raises(ConfigError, match="train.adjacency_lr_scale"):
        TrialConfig.from_tune({"data": {"format": "synthetic"}, "model": {"name": "stgcn"},
                               "train": {"adjacency_lr_scale": 0}})
