"""Trainable-score masks: ``weight * 1[score > threshold]`` with a straight-through gradient.

Every masked weight gets a ``ScoreMask`` torch parametrization holding one learnable score per
unit (a weight, a kernel or an output channel). The threshold is the ``level`` quantile of the
scores of a group (the whole network, or one block), weighted by how many weights each unit
covers, so the achieved fraction of pruned *weights* matches the level whatever the
granularity. A ``SparseState`` module, added to the model as ``sparse_state``, owns the level
(a buffer, so it travels with the checkpoint) and computes the thresholds once per change of
the scores or level, not once per layer.

Channel masks also zero the conv's bias and the affine of the BN that follows it, so a pruned
channel's output is exactly zero (not BN's shift): that is what lets ``compact`` remove it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from skelray.errors import ConfigError
from skelray.sparsity._schedule import Schedule

GRANULARITIES = ("element", "kernel", "channel")
SCOPES = ("global", "block")
_NEG_INF = float("-inf")


def check_level(level: object, where: str = "sparsity.level") -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 <= float(level) < 1.0:
        raise ConfigError(f"must be a fraction in [0, 1), got {level!r}", where=where,
                          fix="use e.g. 0.9 to remove 90% of the weights")
    return float(level)


def initial_scores(weight: Tensor, granularity: str, repeat: int = 1) -> Tensor:
    """Starting scores, on a common (0, 1) scale in every layer.

    Element: |w| * sqrt(fan-in). Kaiming-style init makes |w| scale as 1/sqrt(fan-in), so raw
    magnitudes would make a global threshold prune mostly the wide-fan-in (Kx1) layers;
    standardised, a default-initialised layer's scores are uniform on (0, 1) whatever its shape.
    Kernel and channel: a unit's mean |w| rank within its layer, mapped to (0, 1). Means of many
    weights bunch up near the layer's mean, tighter the bigger the unit, so their raw values
    would again favour some layers; ranks spread every layer alike. Either way a global
    threshold starts out pruning layers about evenly, and training moves the scores from there.
    """
    w = weight.detach().abs() * math.sqrt(weight[0].numel())
    if granularity == "element" or (granularity == "kernel" and w.dim() <= 2):
        return w.clone()
    if granularity == "kernel":
        means = w.mean(dim=tuple(range(2, w.dim())), keepdim=True)
    else:
        means = w.reshape(repeat, w.shape[0] // repeat, -1).mean(dim=(0, 2))
    ranks = torch.empty_like(means.reshape(-1))
    ranks[means.reshape(-1).argsort()] = torch.arange(ranks.numel(), dtype=ranks.dtype, device=ranks.device)
    return ((ranks + 0.5) / ranks.numel()).reshape(means.shape)


class ScoreMask(nn.Module):
    """Parametrization of a weight: ``weight * mask``, the mask from this unit's scores.

    ``repeat`` > 1 ties output channels ``c, C + c, 2C + c, ...`` to one score (ST-GCN's graph
    conv, whose K partitions of channel c are summed into one channel).
    """

    def __init__(self, weight: Tensor, granularity: str, repeat: int = 1) -> None:
        super().__init__()
        self.granularity, self.repeat, self.group = granularity, repeat, 0
        self.score = nn.Parameter(initial_scores(weight, granularity, repeat))
        self.unit_size = weight.numel() // self.score.numel()
        object.__setattr__(self, "_state", None)  # a plain reference, so not a submodule

    def bind(self, state: SparseState, group: int) -> None:
        object.__setattr__(self, "_state", state)
        self.group = group

    def keep(self) -> Tensor:
        """Boolean mask per unit (score shape)."""
        return self.score.detach() > self._state.threshold(self.group)

    def unit_mask(self) -> Tensor:
        # Straight-through: the value is the 0/1 mask, the gradient reaches the score as if the
        # mask were the score itself. (s - s.detach()) is exactly 0, so kept weights stay exact.
        return self.keep().to(self.score.dtype) + (self.score - self.score.detach())

    def expand(self, m: Tensor, ndim: int) -> Tensor:
        if self.granularity == "channel":
            return m.repeat(self.repeat).view(-1, *([1] * (ndim - 1)))
        return m

    def channel_vector(self, repeated: bool) -> Tensor:
        """Per output channel (``repeated``) or per score (the BN after a tied conv)."""
        m = self.unit_mask()
        return m.repeat(self.repeat) if repeated else m

    def channel_keep(self, repeated: bool) -> Tensor:
        k = self.keep()
        return k.repeat(self.repeat) if repeated else k

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.expand(self.unit_mask(), weight.dim())

    def baked(self, weight: Tensor) -> Tensor:
        return weight * self.expand(self.keep().to(weight.dtype), weight.dim())

    def kept_fraction(self) -> tuple[int, int]:
        """(kept weights, weights) of this mask."""
        kept = int(self.keep().sum()) * self.unit_size
        return kept, self.score.numel() * self.unit_size


class FollowerMask(nn.Module):
    """Parametrization of a bias or BN affine vector: zero where the owner pruned the channel."""

    def __init__(self, owner: nn.Module, repeated: bool) -> None:
        super().__init__()
        object.__setattr__(self, "_owner", owner)
        self.repeated = repeated

    def forward(self, t: Tensor) -> Tensor:
        return t * self._owner.channel_vector(self.repeated)

    def baked(self, t: Tensor) -> Tensor:
        return t * self._owner.channel_keep(self.repeated).to(t.dtype)


class SparseState(nn.Module):
    """The current level of one sparsified network and its cached thresholds."""

    def __init__(self, target: float, granularity: str, scope: str, schedule: Schedule | None,
                 group_names: list[str]) -> None:
        super().__init__()
        self.target, self.granularity, self.scope, self.schedule = target, granularity, scope, schedule
        self.group_names = group_names
        start = target * schedule.fraction(0) if schedule is not None else target
        # A buffer, so a checkpoint restores the level reached (not epoch 0's level).
        self.register_buffer("level", torch.tensor(start, dtype=torch.float64))
        object.__setattr__(self, "_masks", [])
        object.__setattr__(self, "_cache", (None, None, None))

    def add(self, mask: ScoreMask, group: int) -> None:
        mask.bind(self, group)
        self._masks.append(mask)

    def masks(self) -> list[ScoreMask]:
        return list(self._masks)

    def set_level(self, level: float) -> None:
        with torch.no_grad():
            self.level.fill_(level)

    def threshold(self, group: int, *, at_target: bool = False) -> Tensor:
        # Recomputed only when a score or the level changed: optimiser steps, load_state_dict
        # and .to() all bump a tensor's version or move its storage.
        key = (self.level._version, self.level.data_ptr(), torch.is_inference_mode_enabled(),
               tuple((m.score._version, m.score.data_ptr()) for m in self._masks))
        cached_key, current, target = self._cache
        if cached_key != key:
            current, target = self._thresholds(float(self.level)), None
            object.__setattr__(self, "_cache", (key, current, target))
        if not at_target:
            return current[group]
        if target is None:
            target = self._thresholds(self.target)
            object.__setattr__(self, "_cache", (key, current, target))
        return target[group]

    @torch.no_grad()
    def _thresholds(self, level: float) -> list[Tensor]:
        out = []
        for g in range(len(self.group_names)):
            members = [m for m in self._masks if m.group == g]
            scores = torch.cat([m.score.detach().reshape(-1) for m in members])
            sizes = {m.unit_size for m in members}
            if len(sizes) == 1:
                counts = None
            else:
                per_mask = torch.tensor([m.unit_size for m in members], device=scores.device)
                counts = per_mask.repeat_interleave(torch.tensor([m.score.numel() for m in members],
                                                                 device=scores.device))
            out.append(quantile_threshold(scores, counts, level))
        return out

    def penalty(self) -> Tensor:
        """L2 pull, like weight decay, on weights the target level will prune but the current
        level still keeps; it rises with the ramp (0 in warm-up) so they fade before they go."""
        zero = self.level.new_zeros((), dtype=torch.float32)
        coef = self.schedule.penalty if self.schedule is not None else 0.0
        if coef == 0.0 or self.target == 0.0 or float(self.level) == 0.0:
            return zero
        total = zero
        for m in self._masks:
            doomed = (m.score.detach() <= self.threshold(m.group, at_target=True)) & m.keep()
            weight = m._module.parametrizations[m._tensor_name].original
            total = total + (weight.square() * m.expand(doomed.to(weight.dtype), weight.dim())).sum()
        return 0.5 * coef * (float(self.level) / self.target) * total

    def extra_repr(self) -> str:
        return (f"target={self.target}, granularity={self.granularity!r}, scope={self.scope!r}, "
                f"groups={len(self.group_names)}")


def quantile_threshold(scores: Tensor, counts: Tensor | None, level: float) -> Tensor:
    """The score at or below which units are pruned so that ``level`` of the weights go.

    ``counts`` (weights per unit) is None when every unit covers the same number of weights.
    Units are pruned in score order; the cut is placed where the pruned weight count is
    closest to ``level`` of the total.
    """
    if counts is None:
        k = round(level * scores.numel())
        if k <= 0:
            return scores.new_tensor(_NEG_INF)
        return torch.kthvalue(scores, k).values
    order = torch.argsort(scores)
    cum = counts[order].cumsum(0)
    want = level * float(cum[-1])
    j = int(torch.searchsorted(cum, torch.tensor(want, dtype=cum.dtype, device=cum.device)))
    j = min(j, len(cum) - 1)
    below = float(cum[j - 1]) if j > 0 else 0.0
    if abs(below - want) <= abs(float(cum[j]) - want):
        j -= 1  # stopping one unit earlier is closer to the target
    if j < 0:
        return scores.new_tensor(_NEG_INF)
    return scores[order[j]]


# -- which tensors get masks -------------------------------------------------------------------

def block_key(model: nn.Module, name: str) -> str:
    """The block a module belongs to: ``blocks.3`` for ``blocks.3.tcn.branches.0.conv``, else
    the top-level child (one entry of it, if that child is a list of layers)."""
    parts = name.split(".")
    child = getattr(model, parts[0], None)
    if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(parts) > 1 and parts[1].isdigit():
        return ".".join(parts[:2])
    return parts[0]


def mask_targets(model: nn.Module, *, classifier: bool = False, stem: bool = False
                 ) -> Iterator[tuple[str, nn.Module]]:
    """The convs to mask: every conv inside ``model.blocks`` (graph 1x1, temporal, residual),
    or every conv when the model has no blocks; ``stem`` adds convs outside the blocks (the
    input embedding), ``classifier`` the head. BN, adjacency and embeddings are never masked."""
    blocks = getattr(model, "blocks", None)
    head = getattr(model, "head", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            if blocks is None or name.startswith("blocks.") or stem:
                yield name, module
        elif classifier and module is head and isinstance(module, nn.Linear):
            yield name, module


def channel_links(model: nn.Module) -> dict[int, tuple[nn.Module | None, int]]:
    """For channel masks: ``id(conv) -> (BN that normalises its output channels, repeat)``.

    Architecture knowledge lives here (and in ``_compact``) so the model files stay unaware of
    sparsity; a conv not listed still gets its weight and bias masked, just no BN.
    """
    from skelray.models._layers import ConvBN
    from skelray.models._rep import SerialBranch
    from skelray.models.stgcn import STGCNBlock

    links: dict[int, tuple[nn.Module | None, int]] = {}
    for module in model.modules():
        if isinstance(module, ConvBN):
            links[id(module.conv)] = (module.bn, 1)
        elif isinstance(module, SerialBranch):
            # conv1 -> avg-pool -> BN: the pool is per channel, so the BN follows conv1;
            # conv1 -> kx1 conv -> BN: the BN follows the second conv.
            first = module.conv1 if module.pool else module.second
            links[id(first)] = (module.bn, 1)
        elif isinstance(module, STGCNBlock):
            links[id(module.gcn)] = (module.tcn[0], module.partitions)
            links[id(module.tcn[2])] = (module.tcn[3], 1)
    return links


def attach(module: nn.Module, name: str, mask: nn.Module) -> None:
    parametrize.register_parametrization(module, name, mask, unsafe=True)
    object.__setattr__(mask, "_module", module)
    object.__setattr__(mask, "_tensor_name", name)


def sparsify_network(model: nn.Module, level: float, granularity: str, scope: str,
                     schedule: Schedule | None, *, classifier: bool = False, stem: bool = False) -> nn.Module:
    """Add score masks to ``model`` in place (see ``skelray.sparsity.sparsify``)."""
    targets = list(mask_targets(model, classifier=classifier, stem=stem))
    if not targets:
        raise ConfigError(f"{type(model).__name__} has no conv layers to sparsify", where="model",
                          fix="sparsify a registered skeleton model")
    links = channel_links(model) if granularity == "channel" else {}
    keys = [block_key(model, n) if scope == "block" else "all" for n, _ in targets]
    group_names = list(dict.fromkeys(keys))
    state = SparseState(level, granularity, scope, schedule, group_names)
    for (name, module), key in zip(targets, keys):
        # The classifier is pruned per weight whatever the granularity: a pruned row would be
        # a class the model can never predict.
        gran = "element" if isinstance(module, nn.Linear) else granularity
        bn, repeat = links.get(id(module), (None, 1))
        mask = ScoreMask(module.weight, gran, repeat)
        attach(module, "weight", mask)
        state.add(mask, group_names.index(key))
        if gran == "channel":
            if getattr(module, "bias", None) is not None:
                attach(module, "bias", FollowerMask(mask, repeated=True))
            if bn is not None and bn.affine and not parametrize.is_parametrized(bn):
                attach(bn, "weight", FollowerMask(mask, repeated=False))
                attach(bn, "bias", FollowerMask(mask, repeated=False))
    model.add_module("sparse_state", state)
    return model


def parametrized(model: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Module]]:
    """``(module, tensor name, mask)`` for every masked tensor of ``model``."""
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name, plist in module.parametrizations.items():
                for p in plist:
                    if isinstance(p, (ScoreMask, FollowerMask)) or hasattr(p, "baked"):
                        yield module, name, p


def remove_masks(model: nn.Module, *, bake: bool) -> nn.Module:
    """Drop every mask in place: ``bake`` keeps the masked values (0/1 masks), else the dense
    weights come back. Also drops the ``sparse_state`` / ``ctf_state`` modules."""
    found = list(parametrized(model))
    values = {}
    if bake:
        with torch.no_grad():
            for module, name, mask in found:
                original = module.parametrizations[name].original
                values[(id(module), name)] = mask.baked(original).detach().clone()
    for module in {id(m): m for m, _, _ in found}.values():
        _unparametrize(module)
    if bake:
        with torch.no_grad():
            for module, name, _ in found:
                getattr(module, name).copy_(values[(id(module), name)])
    for module in list(model.modules()):
        for child_name in ("sparse_state", "ctf_state"):
            if child_name in module._modules:
                del module._modules[child_name]
    return model


def _unparametrize(module: nn.Module) -> None:
    """Put the original tensors back as plain parameters and the module's class back.

    Not ``parametrize.remove_parametrizations``: that deletes the tensor's property from the
    module's class, and deep copies of a parametrized module share that class, so removing the
    masks from a copy (``compact`` works on one) would break the original model.
    """
    originals = {name: plist.original for name, plist in module.parametrizations.items()}
    del module._modules["parametrizations"]
    module.__class__ = module.__class__.__bases__[0]
    for name, tensor in originals.items():
        if isinstance(tensor, nn.Parameter):
            module.register_parameter(name, tensor)
        else:
            module.register_buffer(name, tensor)
