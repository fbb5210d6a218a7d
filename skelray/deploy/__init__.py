"""Running skelray on real clusters: Ray Jobs submission (``jobs``, ``submit``), KubeRay
manifests (``k8s``) and their offline validation (``validate``)."""

from __future__ import annotations
