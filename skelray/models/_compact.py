"""A model's inference form, and the extension points that let masked models reach it.

``inference_form(model)`` is what export ships and trials measure: the model compacted when it
carries weight masks, then fused. The masks belong to another package (``skelray.sparsity``'s
score and coarse-to-fine masks), so this module knows none of them; the package that puts
masks on a model plugs into two registries when it is imported (and it always is before a
model can carry its masks):

- ``register_masks(carries=..., bake=...)``: how to tell that a module carries the package's
  masks, and how to bake them into the weights and remove them, in place.
- ``register_compaction(BlockType)(rule)``: how to cut the channels a block type's masks left
  exactly zero (a ``CompactionRule``).

``compact(model)`` bakes the masks of a copy, then cuts every chain of blocks (a model's
``blocks`` ``nn.Sequential``, the convention ``skelray.sparsity`` masks by) whose blocks all
have a rule. A masked block without a rule raises ``ConfigError`` rather than leaving it
silently uncut; a chain of unmasked blocks without rules is left as it is (baked, exact).

Residual additions: a block's output is ``tcn(x) + residual(x)``, and a channel of that sum
can go only if every tensor summed into it is zero there. Blocks chained by identity
residuals share one channel set (a "segment"): it keeps the channels any of its blocks or its
entry produces. The last segment keeps every channel, so ``features()`` and the head keep
their width (an ensemble averages its members' features position by position).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from skelray.errors import ConfigError
from skelray.models._fuse import fuse


class CompactionRule(Protocol):
    """How compaction cuts the exactly-zero channels of one block type (all methods take the
    block; channel sets are boolean vectors over channels)."""

    def supports(self, block: nn.Module) -> bool:
        """Whether this form of the block can be cut (e.g. its training form, not its fused one)."""
        ...

    def in_width(self, block: nn.Module) -> int:
        """Channels the block reads."""
        ...

    def out_width(self, block: nn.Module) -> int:
        """Channels the block outputs."""
        ...

    def passes_input(self, block: nn.Module) -> bool:
        """Whether the block adds its input to its output channel by channel (an identity
        residual): then its input and output must keep the same channels."""
        ...

    def zero(self, block: nn.Module, input_zero: Tensor) -> Tensor:
        """Output channels that are exactly zero whatever the input, given the input channels
        that are (``input_zero``)."""
        ...

    def shrink(self, block: nn.Module, alive_in: Tensor, alive_out: Tensor) -> None:
        """Keep only the ``alive_in`` input and ``alive_out`` output channels, in place (inner
        channels the block may cut on its own)."""
        ...


@dataclass(frozen=True)
class _Masks:
    carries: Callable[[nn.Module], bool]
    bake: Callable[[nn.Module], None]


_masks: list[_Masks] = []
_rules: dict[type, CompactionRule] = {}


def register_masks(*, carries: Callable[[nn.Module], bool], bake: Callable[[nn.Module], None]) -> None:
    """Declare a kind of weight mask: ``carries(module)`` says whether ``module`` or anything in
    it carries one, ``bake(model)`` replaces every such mask in ``model`` by the values it keeps
    and removes it (in place). Registering the same pair again changes nothing."""
    entry = _Masks(carries, bake)
    if entry not in _masks:
        _masks.append(entry)


def carries_masks(model: nn.Module) -> bool:
    """Whether ``model`` (or any part of it) carries weight masks of a registered kind."""
    return any(kind.carries(model) for kind in _masks)


def register_compaction(block_type: type[nn.Module], *, overwrite: bool = False) -> Callable[[CompactionRule], CompactionRule]:
    """Decorator: ``rule`` (a ``CompactionRule``) cuts blocks of exactly ``block_type``
    (a subclass registers its own rule)."""

    def add(rule: CompactionRule) -> CompactionRule:
        known = _rules.get(block_type)
        if known is not None and known is not rule and not overwrite:
            raise ConfigError(f"a compaction rule for {block_type.__qualname__} is registered already",
                              fix="pass overwrite=True to replace it")
        _rules[block_type] = rule
        return rule

    return add


def compaction_rule(block: nn.Module) -> CompactionRule | None:
    """The rule registered for ``block``'s type, or None."""
    return _rules.get(type(block))


def inference_form(model: nn.Module) -> nn.Module:
    """What export ships: ``model`` compacted when it carries masks, then fused (a new module;
    ``model`` is left as it was)."""
    return fuse(compact(model)) if carries_masks(model) else fuse(model)


def compact(model: nn.Module) -> nn.Module:
    """A smaller dense, eval-mode copy of a masked ``model`` with identical outputs.

    The masks are baked into the weights, then every output channel whose output is exactly
    zero is removed together with the matching input channels of the next layers (see the
    module docstring). ``fuse`` applies to the result. The input model is left untouched; a
    model without masks comes back as an eval-mode copy (with its exactly-zero channels cut),
    and compacting a compacted model changes nothing. Raises ``ConfigError`` for a masked
    block that has no registered rule.
    """
    for path, blocks in _chains(model):
        _check_rules(path, blocks)
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for kind in _masks:
            kind.bake(out)
        for _, blocks in _chains(out):
            _cut(blocks)
    return out


def _chains(model: nn.Module) -> list[tuple[str, nn.Sequential]]:
    found = []
    for path, module in model.named_modules():
        blocks = getattr(module, "blocks", None)
        if isinstance(blocks, nn.Sequential) and len(blocks):
            found.append((f"{path}.blocks" if path else "blocks", blocks))
    return found


def _check_rules(path: str, blocks: nn.Sequential) -> None:
    for i, block in enumerate(blocks):
        if compaction_rule(block) is None and carries_masks(block):
            kind = type(block)
            raise ConfigError(
                f"{kind.__module__}.{kind.__qualname__} carries masks but has no compaction rule, so its "
                "pruned channels cannot be removed", where=f"{path}.{i}",
                fix=f"register one: skelray.models.register_compaction({kind.__qualname__})(rule), "
                    "rule implementing skelray.models.CompactionRule")


def _cut(blocks: nn.Sequential) -> None:
    """Cut zero channels through a chain whose blocks all have rules (in place)."""
    rules = [compaction_rule(b) for b in blocks]
    if any(r is None or not r.supports(b) for r, b in zip(rules, blocks)):
        return
    # Segments: a new one starts wherever a block does not pass its input through.
    segments: list[list[int]] = []
    for i, (b, rule) in enumerate(zip(blocks, rules)):
        if i == 0 or not rule.passes_input(b):
            segments.append([i])
        else:
            segments[-1].append(i)
    device = next(blocks.parameters()).device
    alive_in = torch.ones(rules[0].in_width(blocks[0]), dtype=torch.bool, device=device)
    for s, seg in enumerate(segments):
        first, rule = blocks[seg[0]], rules[seg[0]]
        if s == len(segments) - 1:  # the features: keep their width
            alive = torch.ones(rule.out_width(first), dtype=torch.bool, device=device)
        else:
            # A block that passes its input adds the channels the segment already has, so the
            # segment's zero channels are those every block in it leaves at zero.
            zero = rule.zero(first, ~alive_in)
            for j in seg[1:]:
                zero = rules[j].zero(blocks[j], zero)
            alive = ~zero
        rule.shrink(first, alive_in, alive)
        for j in seg[1:]:
            rules[j].shrink(blocks[j], alive, alive)
        alive_in = alive
