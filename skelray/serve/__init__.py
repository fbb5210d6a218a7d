"""Serving a bundle with Ray Serve: Ingress -> Preprocess -> one deployment per member -> Ensemble.

``app`` is the application builder (``serve run skelray.serve:app bundle=PATH``);
``serve_config`` writes the Serve config a RayService embeds; ``ServeArgs`` lists the settings.
"""

from __future__ import annotations

from skelray.serve.app import app
from skelray.serve.config import ServeArgs, plan, serve_config

__all__ = ["ServeArgs", "app", "plan", "serve_config"]
