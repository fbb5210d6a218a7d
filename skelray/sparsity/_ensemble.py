"""The multi-level sparsity ensemble: one independent backbone per sparsity level, trained
together and averaged (registered as the model ``sparse_ensemble``).

``combine="feature"`` (the paper's) averages the members' features before one shared head;
``combine="logits"`` gives each member its own head and averages their logits. With
``member_loss=True`` each member's own prediction (the shared head on its features, or its
own head) also gets a cross-entropy loss, so a very sparse member cannot hide behind the
others; the trainer adds it through ``skelray.sparsity.penalty(model, labels)`` or
``model.member_losses(labels)`` after the forward pass.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skelray.errors import ConfigError, check_choice
from skelray.models import carries_masks, compact, create_model, fuse, register_model
from skelray.models._layers import SkeletonModel
from skelray.sparsity._api import sparsify
from skelray.sparsity._masks import check_level, remove_masks
from skelray.sparsity._schedule import Schedule

NAME = "sparse_ensemble"
DEFAULT_LEVELS = (0.6, 0.8, 0.95, 0.99)
COMBINES = ("feature", "logits")


class _Scratch:
    """Holds the last forward's member logits; copies (deepcopy, pickle) as empty, because a
    tensor that is part of an autograd graph cannot be deep-copied and fuse() copies models."""

    def __init__(self) -> None:
        self.logits: list[Tensor] = []

    def __deepcopy__(self, memo: dict) -> _Scratch:
        return _Scratch()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.logits = []


class MultiLevelEnsemble(SkeletonModel):
    """Members: ``create_model(name, **model_kwargs)`` once per level, each sparsified at it."""

    def __init__(self, name: str = "hpigcn_rp", levels: Sequence[float] = DEFAULT_LEVELS,
                 combine: str = "feature", member_loss: bool = True, *, granularity: str = "element",
                 scope: str = "global", schedule: Schedule | Mapping[str, Any] | None = None,
                 **model_kwargs: Any) -> None:
        if name == NAME:
            raise ConfigError("the backbone cannot be an ensemble itself", where=f"{NAME}.backbone",
                              fix="use a single model such as hpigcn_rp")
        levels = _check_levels(levels)
        check_choice(combine, COMBINES, f"{NAME}.combine")
        members = [create_model(name, **model_kwargs) for _ in levels]
        first = members[0]
        if not isinstance(first, SkeletonModel):
            raise ConfigError(f"'{name}' is not a skeleton model with features()", where=f"{NAME}.backbone")
        super().__init__(num_classes=first.num_classes, layout=first.layout, in_channels=first.in_channels,
                         num_persons=first.num_persons, dropout=first.dropout, feat_dim=first.feat_dim,
                         name=NAME)
        self.backbone, self.levels, self.combine, self.member_loss = name, levels, combine, bool(member_loss)
        self.drop = copy.deepcopy(first.drop)  # the backbone's own rule (ST-GCN drops inside blocks)
        if combine == "feature":
            for m in members:  # one shared head: members' own heads would be dead weight
                m.head, m.drop = nn.Identity(), nn.Identity()
        else:
            self.head = nn.Identity()  # each member's head makes its logits
        self.members = nn.ModuleList(members)
        object.__setattr__(self, "_scratch", _Scratch())
        self.resparsify(granularity, scope, schedule)

    def resparsify(self, granularity: str, scope: str, schedule: Schedule | Mapping[str, Any] | None, *,
                   levels: Sequence[float] | None = None, classifier: bool = False,
                   stem: bool = False) -> MultiLevelEnsemble:
        """Re-mask every member (dense weights kept) with this configuration, in place."""
        if levels is not None:
            new = _check_levels(levels)
            if len(new) != len(self.members):
                raise ConfigError(f"{len(new)} levels for {len(self.members)} members",
                                  where="sparsity.ensemble_levels",
                                  fix=f"pass levels={list(new)} when creating the model, "
                                      f"or {len(self.members)} levels")
            self.levels = new
        for member, level in zip(self.members, self.levels):
            remove_masks(member, bake=False)
            sparsify(member, level, granularity, scope, schedule, classifier=classifier, stem=stem)
        return self

    def features(self, x: Tensor) -> Tensor:
        return torch.stack([m.features(x) for m in self.members]).mean(dim=0)

    def classify(self, x: Tensor) -> Tensor:
        keep = self.training and self.member_loss
        if self.combine == "feature":
            feats = [m.features(x) for m in self.members]
            logits = self.head(self.drop(torch.stack(feats).mean(dim=0)))
            self._scratch.logits = [self.head(self.drop(f)) for f in feats] if keep else []
        else:
            outs = [m(x) for m in self.members]
            logits = torch.stack(outs).mean(dim=0)
            self._scratch.logits = outs if keep else []
        return logits

    def member_losses(self, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """Mean cross-entropy of the members' own predictions in the last training forward."""
        if not self._scratch.logits:
            raise RuntimeError("member_losses needs a training-mode forward first (with member_loss=True)")
        losses = [F.cross_entropy(z, labels, label_smoothing=label_smoothing) for z in self._scratch.logits]
        return torch.stack(losses).mean()

    def fuse(self) -> MultiLevelEnsemble:
        """Member-wise inference form (``skelray.models.fuse`` calls this on its copy): each
        member compacted (masks baked, empty channels cut), then fused. Members that carry no
        masks, because the ensemble was compacted as a whole first, are fused as they are."""
        self.members = nn.ModuleList(fuse(compact(m) if carries_masks(m) else m) for m in self.members)
        return self.eval()

    def extra_repr(self) -> str:
        return f"backbone={self.backbone!r}, levels={self.levels}, combine={self.combine!r}"


def _check_levels(levels: object) -> tuple[float, ...]:
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence) or not levels:
        raise ConfigError(f"must be a non-empty list of levels, got {levels!r}", where=f"{NAME}.levels",
                          fix="e.g. levels: [0.6, 0.8, 0.95, 0.99]")
    return tuple(check_level(v, where=f"{NAME}.levels") for v in levels)


# -- registration ------------------------------------------------------------------------------
# A plug-in of the model registry (pyproject.toml, entry point group ``skelray.models``): the
# registry imports this module when the name is first used, and importing skelray.sparsity
# registers it too. ``delegate`` makes the backbone's options this model's options.

@register_model(name=NAME, delegate="backbone")
def sparse_ensemble(num_classes: int = 60, layout: Any = "ntu25", in_channels: int = 3, num_persons: int = 2,
                    dropout: float = 0.0, backbone: str = "hpigcn_rp",
                    levels: Sequence[float] = DEFAULT_LEVELS,
                    combine: str = "feature", member_loss: bool = True, granularity: str = "element",
                    scope: str = "global", **backbone_kwargs: Any) -> MultiLevelEnsemble:
    """Multi-level sparsity ensemble: one ``backbone`` per level, averaged (features or logits)."""
    return MultiLevelEnsemble(backbone, levels, combine, member_loss, granularity=granularity, scope=scope,
                              num_classes=num_classes, layout=layout, in_channels=in_channels,
                              num_persons=num_persons, dropout=dropout, **backbone_kwargs)
