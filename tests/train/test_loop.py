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
