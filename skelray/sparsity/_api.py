"""The entry points a trainer calls: ``sparsify``, ``on_epoch_start``, ``penalty``, ``is_sparse``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from skelray.errors import ConfigError, check_choice
from skelray.sparsity._ctf import CTFMask, CTFState, ctf, ctf_epoch
from skelray.sparsity._masks import (
    GRANULARITIES,
    SCOPES,
    ScoreMask,
    SparseState,
    check_level,
    sparsify_network,
)
from skelray.sparsity._schedule import Schedule, parse_schedule


def sparsify(model: nn.Module, level: float | Sequence[float] | None, granularity: str = "element",
             scope: str = "global", schedule: Schedule | Mapping[str, Any] | None = None, *,
             classifier: bool = False, stem: bool = False) -> nn.Module:
    """Give ``model`` trainable sparse masks, in place, and return it.

    ``level``: fraction of the masked weights removed, in [0, 1). ``granularity``: ``element``
    (one score per weight), ``kernel`` (per (out, in) kernel), ``channel`` (per output channel:
    what ``compact`` turns into a smaller model) or ``ctf`` (coarse-to-fine factor masks with a
    budget of ``1 - level``, see ``ctf``). ``scope``: one threshold for the whole network
    (``global``) or one per block (``block``). ``schedule``: ``{warmup_epochs, ramp_epochs,
    kind: linear|step, steps, penalty}`` (``on_epoch_start`` applies it); without one the level
    applies at once. Masked: the convs of the blocks (graph 1x1, temporal, residual); ``stem``
    adds the input embedding's convs, ``classifier`` the head (per weight). A
    ``sparse_ensemble`` takes ``level=None`` (its members keep their own levels) or one level
    per member, and re-masks every member with this granularity, scope and schedule.
    """
    sched = parse_schedule(schedule)
    check_choice(granularity, GRANULARITIES + ("ctf",), "sparsity.granularity")
    check_choice(scope, SCOPES, "sparsity.scope")
    if callable(getattr(model, "resparsify", None)):  # a MultiLevelEnsemble
        if level is not None and not isinstance(level, Sequence):
            raise ConfigError("a sparse_ensemble takes one level per member, not one level",
                              where="sparsity.level",
                              fix="set level: null and give the levels as ensemble_levels "
                                  "(or the model's levels)")
        return model.resparsify(granularity, scope, sched, levels=level, classifier=classifier, stem=stem)
    if level is None:
        raise ConfigError("no sparsity level given", where="sparsity.level",
                          fix="set a level in [0, 1), e.g. 0.9 (only sparse_ensemble takes level: null)")
    level = check_level(level)
    if is_sparse(model):
        raise ConfigError("the model is sparse already", where="model", fix="sparsify a dense model once")
    if granularity == "ctf":
        s = sched or Schedule()
        return ctf(model, 1.0 - level, lam=s.budget_weight, temperature=s.temperature, schedule=sched,
                   classifier=classifier, stem=stem)
    return sparsify_network(model, level, granularity, scope, sched, classifier=classifier, stem=stem)


def is_sparse(model: nn.Module) -> bool:
    """Whether ``model`` (or any member of it) carries sparsity masks."""
    return any(isinstance(m, (SparseState, CTFState, ScoreMask, CTFMask)) for m in model.modules())


def on_epoch_start(model: nn.Module, epoch: int) -> None:
    """Apply the schedules for ``epoch`` (0-based): the level of every score-masked network,
    the temperature and budget switch of every CTF one. Without a schedule: nothing changes."""
    for m in model.modules():
        if isinstance(m, SparseState) and m.schedule is not None:
            m.set_level(m.target * m.schedule.fraction(epoch))
        elif isinstance(m, CTFState):
            ctf_epoch(m, epoch)


def penalty(model: nn.Module, labels: Tensor | None = None) -> Tensor:
    """Every extra loss term the sparse model wants added to the task loss (a scalar tensor):
    the schedule's L2 pull on weights about to be pruned, the CTF budget terms and, given the
    batch's ``labels`` after a training-mode forward, the per-member losses of a
    ``sparse_ensemble`` built with ``member_loss=True``. Zero when there is nothing to add."""
    p = next(model.parameters(), None)
    total = torch.zeros((), device=p.device if p is not None else None)
    for m in model.modules():
        if isinstance(m, SparseState):
            total = total + m.penalty()
        elif isinstance(m, CTFState):
            total = total + m.loss()
        elif labels is not None and m.training and getattr(m, "member_loss", False) \
                and callable(getattr(m, "member_losses", None)):
            total = total + m.member_losses(labels)
    return total
