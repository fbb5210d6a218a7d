"""The model zoo: a registry of skeleton action-recognition architectures.

``create_model(name, **kwargs)`` is the only way in; every model takes ``(N, M, T, V, C)`` and
returns ``(N, num_classes)`` logits, and exposes ``features(x)`` and ``feat_dim``.
``fuse(model)`` gives its re-parameterized form, ``inference_form(model)`` what export ships
(compacted first when it carries masks); ``profile`` counts params and MACs.

Where a block fuses: in its own ``fuse()`` (``_rep.py`` for Rep-TCN and the PA matrices,
``stgcn.py``, ``hpigcn.py``), on the shared BN/conv algebra of ``_fuse.py``; ``fuse(model)``
calls each block's on a copy.

One file per architecture registers it with ``@register_model``; models defined elsewhere are
plug-ins imported on first use: other packages' declared under the ``skelray.models``
entry-point group, skelray's own higher layers' (``sparse_ensemble`` in ``skelray.sparsity``)
named in ``_registry.BUILTIN_PLUGINS``.
A package that masks weights plugs its masks and per-block compaction rules in with
``register_masks`` and ``register_compaction`` (see ``_compact``).
"""

from __future__ import annotations

from skelray.models._compact import (
    CompactionRule,
    carries_masks,
    compact,
    compaction_rule,
    inference_form,
    register_compaction,
    register_masks,
)
from skelray.models._fuse import fuse, is_fusable
from skelray.models._profile import count_params, profile
from skelray.models._registry import create_model, list_models, model_options, register_model

# Importing an architecture's module registers it.
from skelray.models import esgn, hpigcn, stgcn  # noqa: F401  isort: skip

__all__ = [
    "CompactionRule",
    "carries_masks",
    "compact",
    "compaction_rule",
    "count_params",
    "create_model",
    "fuse",
    "inference_form",
    "is_fusable",
    "list_models",
    "model_options",
    "profile",
    "register_compaction",
    "register_masks",
    "register_model",
]
