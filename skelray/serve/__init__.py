"""Serving a bundle with Ray Serve, in one of two graphs (``ServeArgs.graph``).

Fused (the default): ``ingress.Ingress`` checks and parses the body (``_requests``) and, in the
same replica, batches the clips of concurrent requests through ``replica.FusedEnsemble``: the
training code's ``skelray.data.Preprocess``, one forward per fused member, the weighted logits
(``skelray.ensemble.combine``). Per-member: Ingress -> ``deployments.Preprocess`` -> one
``deployments.Member`` per member, each batching clips -> ``deployments.Ensemble``.
``placement`` fits the plan to the cluster before deploying and reports the start. On a Ray
started here the ingress replicas answer on ports of their own (``direct``: Serve's direct
ingress, no proxy hop), and ``front`` forwards ``--port``'s connections to them.

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
