"""Coarse-to-fine (CTF) pruning: each connection's mask is a product of four soft factors.

For a conv weight ``W[o, i, k]`` (output channel, input channel, tap):

    mask[o, i, k] = f(channel[o]) * f(column[o, k]) * f(row[o, i]) * f(entry[o, i, k])
    f(a) = sigmoid(a / T)

A channel factor at 0 removes the whole filter, a row factor one input's kernel, a column
factor one tap across all inputs; the entry factors only matter where the coarser ones kept
the block, which is the "fine pruning only where coarse pruning kept it" rule, obtained by the
product rather than by bookkeeping. The budget term ``lambda * (sum(mask) - B)^2 / N`` (B the
connections to keep, N all connections; dividing by N once keeps lambda independent of the
model's size) pulls the masks to the budget, and the temperature T is annealed geometrically
from its start to its end value; at the end value the masks are the T -> 0 limit, exactly 0
or 1, and training goes on with them. Gradients always use T no lower than 1 (a "floor"):
with the annealed T, a factor far from 0, and every factor multiplied by a factor at 0, would
get no gradient, and a budget missed when the masks froze could never be made up.

How a trainer uses it (the sweep trial already does, through ``sparsify(granularity="ctf")``):

    model = ctf(model, budget=0.1)             # keep 10% of the connections
    loss = task_loss + ctf_loss(model)         # or sparsity.penalty(model), which includes it
    anneal(model, progress)                    # progress 0 -> 1 over training (per step or epoch)

``on_epoch_start(model, epoch)`` anneals per epoch when the model was given a schedule (the
budget term is off during its warm-up; T reaches its end value at the last ramp epoch, so
leave epochs after the ramp to train with the crisp masks). Adam suits the mask logits best:
their gradients differ by orders of magnitude between the coarse and fine factors, which
Adam's per-parameter scaling absorbs; with SGD the budget lands within a few percent.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from skelray.errors import ConfigError
from skelray.sparsity._masks import FollowerMask, attach, channel_links, mask_targets
from skelray.sparsity._schedule import Schedule


class CTFMask(nn.Module):
    """Parametrization of a conv (or linear) weight with coarse-to-fine factor masks."""

    def __init__(self, weight: Tensor, init: float, repeat: int = 1) -> None:
        super().__init__()
        o, i = weight.shape[:2]
        k = math.prod(weight.shape[2:])
        self.repeat, self.shape3 = repeat, (o, i, k)
        # Small noise breaks the tie between otherwise identical factors, so the budget term
        # does not move them all in lock-step.
        def factor(*shape: int) -> nn.Parameter:
            return nn.Parameter(init + 0.1 * torch.randn(*shape, dtype=weight.dtype, device=weight.device))
        # Named score_* so the optimiser builder keeps weight decay off them.
        self.score_channel = factor(o // repeat)
        self.score_column = factor(o, k)
        self.score_row = factor(o, i)
        self.score_entry = factor(o, i, k)
        object.__setattr__(self, "_state", None)

    def logits(self) -> tuple[Tensor, ...]:
        return self.score_channel, self.score_column, self.score_row, self.score_entry

    def _coarse(self, f: Callable[[Tensor], Tensor]) -> Tensor:
        """Channel x column x row factors, (O, I, K)."""
        c = f(self.score_channel).repeat(self.repeat)
        return c[:, None, None] * f(self.score_column)[:, None, :] * f(self.score_row)[:, :, None]

    def coarse_keep(self) -> Tensor:
        with torch.no_grad():
            return self._coarse(lambda a: (a > 0).to(a.dtype)) > 0

    def full_mask(self, hard: bool = False) -> Tensor:
        """The (O, I, K) mask in force: the product of the four factors.

        ``hard``: the T -> 0 limit (what ``compact`` bakes and ``report`` counts). Below the
        gradient floor the value is the annealed one but the gradient that of the floor
        temperature: with the annealed T a factor far from 0, and every factor multiplied by
        one at 0, would stop learning, and a budget missed once the masks froze could never
        be made up. At the end temperature the value is exactly 0/1, the entry cut placed so
        the kept count is the budget (see ``CTFState.entry_cut``).
        """
        state = self._state
        t, floor = float(state.temperature), state.grad_temperature
        crisp = state.crisp()
        cut = state.entry_cut() if crisp else 0.0
        if hard:
            with torch.no_grad():
                entry = (self.score_entry > cut).to(self.score_entry.dtype)
                return self._coarse(lambda a: (a > 0).to(a.dtype)) * entry
        if t >= floor:
            return self._coarse(lambda a: torch.sigmoid(a / t)) * torch.sigmoid(self.score_entry / t)
        if crisp:
            value = self.full_mask(hard=True)
        else:
            value = (self._coarse(lambda a: torch.sigmoid(a.detach() / t))
                     * torch.sigmoid(self.score_entry.detach() / t))
        shift = cut if math.isfinite(cut) else 0.0
        surrogate = (self._coarse(lambda a: torch.sigmoid(a / floor))
                     * torch.sigmoid((self.score_entry - shift) / floor))
        return value + (surrogate - surrogate.detach())

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.full_mask().view_as(weight)

    def baked(self, weight: Tensor) -> Tensor:
        # The crisp limit; after annealing it is exactly the mask in force.
        return weight * self.full_mask(hard=True).view_as(weight)

    def channel_vector(self, repeated: bool) -> Tensor:
        """The channel factor alone (for the bias and BN of the conv), same rules as the mask."""
        t, floor, a = float(self._state.temperature), self._state.grad_temperature, self.score_channel
        if t >= floor:
            c = torch.sigmoid(a / t)
        else:
            value = (a.detach() > 0).to(a.dtype) if self._state.crisp() else torch.sigmoid(a.detach() / t)
            surrogate = torch.sigmoid(a / floor)
            c = value + (surrogate - surrogate.detach())
        return c.repeat(self.repeat) if repeated else c

    def channel_keep(self, repeated: bool) -> Tensor:
        c = self.score_channel.detach() > 0
        return c.repeat(self.repeat) if repeated else c

    def kept_fraction(self) -> tuple[int, int]:
        with torch.no_grad():
            return int(self.full_mask(hard=True).sum()), math.prod(self.shape3)


class CTFState(nn.Module):
    """Budget, temperature and budget-term weight of one CTF-pruned network."""

    def __init__(self, budget: float, lam: float, temperature: tuple[float, float],
                 schedule: Schedule | None, grad_temperature: float = 1.0) -> None:
        super().__init__()
        self.budget, self.lam, self.temperatures, self.schedule = budget, lam, temperature, schedule
        self.grad_temperature = grad_temperature
        # Buffers, so a checkpoint resumes at the temperature it reached.
        self.register_buffer("temperature", torch.tensor(temperature[0], dtype=torch.float64))
        # 0 while the schedule's warm-up keeps the budget term off.
        warm = schedule is not None and schedule.warmup_epochs > 0
        self.register_buffer("active", torch.tensor(0.0 if warm else 1.0, dtype=torch.float64))
        object.__setattr__(self, "_masks", [])
        object.__setattr__(self, "_cut", (None, 0.0))

    def add(self, mask: CTFMask) -> None:
        object.__setattr__(mask, "_state", self)
        self._masks.append(mask)

    def masks(self) -> list[CTFMask]:
        return list(self._masks)

    def anneal(self, progress: float) -> None:
        """Temperature at ``progress`` in [0, 1]: geometric from the start to the end value."""
        p = min(1.0, max(0.0, float(progress)))
        t0, t1 = self.temperatures
        with torch.no_grad():
            self.temperature.fill_(t0 * (t1 / t0) ** p)

    def crisp(self) -> bool:
        """Whether annealing is over (the temperature at its end value)."""
        return float(self.temperature) <= self.temperatures[1] * (1 + 1e-9)

    def entry_cut(self) -> float:
        """The entry-logit cut of the crisp phase: entries above it are kept.

        Where the coarse factors keep more connections than the budget, the cut keeps the
        budget's worth of the highest entry logits among them (the T -> 0 limit of the entry
        factors, shifted by one offset for the whole network), so the crisp masks meet the
        budget exactly instead of dithering around it with every optimiser step. Where they
        keep fewer, every entry under them stays (-inf) and the budget term pulls the coarse
        factors back up.
        """
        key = (self.temperature._version, tuple((p._version, p.data_ptr()) for m in self._masks
                                                for p in m.logits()))
        if self._cut[0] == key:
            return self._cut[1]
        with torch.no_grad():
            candidates = torch.cat([m.score_entry[m.coarse_keep()] for m in self._masks])
            total = sum(math.prod(m.shape3) for m in self._masks)
            keep = round(self.budget * total)
            if candidates.numel() <= keep:
                cut = float("-inf")
            elif keep == 0:
                cut = float(candidates.max())
            else:
                cut = float(torch.kthvalue(candidates, candidates.numel() - keep).values)
        object.__setattr__(self, "_cut", (key, cut))
        return cut

    def kept(self) -> Tensor:
        """Soft count of kept connections (differentiable)."""
        return sum(m.full_mask().sum() for m in self._masks)

    def loss(self) -> Tensor:
        total = sum(math.prod(m.shape3) for m in self._masks)
        gap = self.kept() - self.budget * total
        return (self.lam * float(self.active)) * gap.square() / total

    def extra_repr(self) -> str:
        return f"budget={self.budget}, lam={self.lam}, temperatures={self.temperatures}"


def ctf(model: nn.Module, budget: float, *, lam: float = 1.0, temperature: tuple[float, float] = (1.0, 1e-3),
        schedule: Schedule | None = None, init: float = 2.0, classifier: bool = False,
        stem: bool = False) -> nn.Module:
    """Give ``model``'s convs coarse-to-fine masks in place, keeping ``budget`` of the connections.

    ``budget`` is the fraction kept, in (0, 1]; ``lam`` weighs the budget term; ``temperature``
    is (start, end) of the annealing; ``init`` the starting logit of every factor (sigmoid(2)
    = 0.88, so masks start nearly open). The same convs as ``sparsify`` are masked, and a
    channel factor also scales the conv's bias and the BN after it (as channel masks do) so a
    channel at 0 outputs exactly 0 and ``compact`` can remove it.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0.0 < budget <= 1.0:
        raise ConfigError(f"must be the fraction of connections kept, in (0, 1], got {budget!r}",
                          where="ctf.budget", fix="e.g. budget=0.1 keeps 10%")
    if not isinstance(lam, (int, float)) or lam < 0:
        raise ConfigError(f"must be >= 0, got {lam!r}", where="ctf.lam")
    if len(temperature) != 2 or not 0 < temperature[1] <= temperature[0]:
        raise ConfigError(f"must be (start, end) with start >= end > 0, got {temperature!r}",
                          where="ctf.temperature", fix="e.g. (1.0, 0.001)")
    if any(isinstance(m, CTFMask) for m in model.modules()) or hasattr(model, "sparse_state"):
        raise ConfigError("the model is already sparse", where="model", fix="apply ctf to a dense model")
    links = channel_links(model)
    state = CTFState(float(budget), float(lam), (float(temperature[0]), float(temperature[1])), schedule)
    for _, module in mask_targets(model, classifier=classifier, stem=stem):
        bn, repeat = links.get(id(module), (None, 1))
        mask = CTFMask(module.weight, init, repeat if not isinstance(module, nn.Linear) else 1)
        attach(module, "weight", mask)
        state.add(mask)
        if isinstance(module, nn.Linear):
            continue
        if getattr(module, "bias", None) is not None:
            attach(module, "bias", FollowerMask(mask, repeated=True))
        if bn is not None and bn.affine:
            attach(bn, "weight", FollowerMask(mask, repeated=False))
            attach(bn, "bias", FollowerMask(mask, repeated=False))
    model.add_module("ctf_state", state)
    return model


def ctf_states(model: nn.Module) -> list[CTFState]:
    return [m for m in model.modules() if isinstance(m, CTFState)]


def ctf_loss(model: nn.Module) -> Tensor:
    """The budget term of every CTF-pruned network in ``model`` (0 when there is none)."""
    losses = [s.loss() for s in ctf_states(model)]
    if not losses:
        p = next(model.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else None)
    return sum(losses)  # type: ignore[return-value]


def anneal(model: nn.Module, progress: float) -> None:
    """Set every CTF temperature for ``progress`` in [0, 1] of the annealing."""
    for s in ctf_states(model):
        s.anneal(progress)


def ctf_epoch(state: CTFState, epoch: int) -> None:
    """Per-epoch schedule: budget term off during warm-up, temperature annealed over the ramp."""
    sched = state.schedule
    if sched is None:
        return
    with torch.no_grad():
        state.active.fill_(0.0 if epoch < sched.warmup_epochs else 1.0)
    state.anneal(sched.progress(epoch))
