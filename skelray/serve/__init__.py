"""Serving a bundle with Ray Serve: Ingress -> Preprocess -> one deployment per member -> Ensemble.

Where an HTTP request becomes logits: ``ingress.Ingress`` checks and parses the body
(``_requests``), ``deployments.Preprocess`` builds each stream with the training code's
``skelray.data.Preprocess``, each ``deployments.Member`` runs its fused member on batches of
clips, and ``deployments.Ensemble`` weights and combines the logits (``skelray.ensemble.combine``).

``app`` is the application builder (``serve run skelray.serve:app bundle=PATH``);
``serve_config`` writes the Serve config a RayService embeds; ``ServeArgs`` lists the settings.
They load on first use (PEP 562), so ``skelray --help`` does not import Ray Serve.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServeArgs", "app", "plan", "serve_config"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from skelray.serve.builder import app

        return app
    if name in ("ServeArgs", "plan", "serve_config"):
        from skelray.serve import config

        return getattr(config, name)
    raise AttributeError(f"module 'skelray.serve' has no attribute '{name}'")
