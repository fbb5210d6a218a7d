"""skelray: sweeps of skeleton action-recognition models on Ray, and serving the best one."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
