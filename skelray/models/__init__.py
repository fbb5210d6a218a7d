"""The model zoo: a registry of skeleton action-recognition architectures.

``create_model(name, **kwargs)`` is the only way in; every model takes ``(N, M, T, V, C)`` and
returns ``(N, num_classes)`` logits, and exposes ``features(x)`` and ``feat_dim``.
``fuse(model)`` gives its re-parameterized inference form; ``profile`` counts params and MACs.
One file per architecture registers it with ``@register_model``.
"""

from __future__ import annotations

from skelray.models._fuse import fuse, is_fusable
from skelray.models._profile import count_params, profile
from skelray.models._registry import create_model, list_models, model_options, register_model

# Importing an architecture's module registers it.
from skelray.models import esgn, hpigcn, stgcn  # noqa: F401  isort: skip

# 'sparse_ensemble' lives in skelray.sparsity (it wraps the models above); importing it last
# registers it, so this one registry lists every model. Safe both ways round: skelray.sparsity
# only needs the names bound above.
import skelray.sparsity  # noqa: F401  isort: skip

__all__ = [
    "count_params",
    "create_model",
    "fuse",
    "is_fusable",
    "list_models",
    "model_options",
    "profile",
    "register_model",
]
