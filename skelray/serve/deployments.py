"""The per-member graph behind the HTTP ingress: Preprocess -> members -> Ensemble.

Chosen with ``graph: per-member`` (``--graph per-member``), or by ``auto`` when members need
GPUs or settings of their own; the default fused graph needs none of these (``ingress.py``).
``Ingress`` (FastAPI, in ``ingress.py``) checks the request and hands the clips to
``Preprocess``, which builds every stream the members need (``skelray.data.Preprocess``, the
code training used); its result goes straight on to ``Ensemble`` (Serve passes the response
along without Ingress holding the arrays), which sends each clip's stream to its members, one
deployment per member with ``@serve.batch`` dynamic batching, and combines their logits with
the manifest's weights (``skelray.ensemble.combine``, the offline definition).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np
from ray import serve

from skelray.ensemble.combine import answer, weighted_logits
from skelray.export.bundle import StreamPlan, ensure_layout, run_streams
from skelray.export.manifest import read_manifest
from skelray.serve.replica import Watchdog, apply_batching, load_members, probe_clip, run_model

__all__ = ["HEALTH_TIMEOUT_S", "Ensemble", "Member", "Preprocess", "Watchdog", "awaitable"]

HEALTH_TIMEOUT_S = 10.0


@serve.deployment
class Member:
    """One fused member; clips from concurrent requests are batched into one forward pass."""

    def __init__(self, bundle: str, name: str, verify_weights: bool = True, dtype: str = "float32") -> None:
        manifest, models, self.device = load_members(bundle, [name], verify=verify_weights, dtype=dtype)
        self.spec = next(m for m in manifest.members if m.name == name)
        self.model = models[name]
        self.forwards = self.clips = 0  # batched forward passes, and the clips they held
        clip = probe_clip(manifest, name)
        self.watchdog = Watchdog(name, lambda: self._run(clip), manifest.num_classes)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: batching can be retuned without restarting the replica."""
        apply_batching(self.forward, config)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return run_model(self.model, x, self.device)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def forward(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        self.forwards += 1
        self.clips += len(clips)
        batch = self.watchdog.started()
        try:
            # In a worker thread, so the replica keeps queueing the next batch meanwhile.
            out = await asyncio.to_thread(self._run, np.stack(clips))
        finally:
            self.watchdog.finished(batch)
        return list(out)

    def stats(self) -> dict[str, Any]:
        return {"name": self.spec.name, "forwards": self.forwards, "clips": self.clips, "pid": os.getpid(),
                "device": self.device}

    async def check_health(self) -> None:
        """Serve calls this every ``health_check_period_s``; raising gets the replica replaced.
        The probe forward runs in a worker thread, so the event loop keeps serving meanwhile."""
        await asyncio.to_thread(self.watchdog.check)


@serve.deployment
class Preprocess:
    """Normalise, resample and build each distinct stream the members take, for every clip."""

    def __init__(self, bundle: str) -> None:
        manifest = read_manifest(bundle)
        ensure_layout(manifest)
        self.preprocessors = StreamPlan.of(manifest).preprocessors()

    def __call__(self, clips: list[np.ndarray]) -> dict[str, np.ndarray]:
        return run_streams(self.preprocessors, clips)


@serve.deployment
class Ensemble:
    """Fan each clip's streams out to the members, and weight and combine what comes back."""

    def __init__(self, bundle: str, members: dict[str, Any]) -> None:
        manifest = read_manifest(bundle)
        self.plan = StreamPlan.of(manifest)
        self.names = [m.name for m in manifest.members]
        self.weights = [m.weight for m in manifest.members]
        self.class_names = manifest.class_names
        self.members = members  # name -> DeploymentHandle

    async def __call__(self, streams: dict[str, np.ndarray], k: int) -> dict[str, Any]:
        n = len(next(iter(streams.values())))
        # One call per clip and member: Serve's batcher regroups clips of concurrent requests.
        calls = [[self.members[name].forward.remote(streams[self.plan.member_key[name]][i]) for i in range(n)]
                 for name in self.names]
        logits = [np.stack(await asyncio.gather(*row)) for row in calls]
        return answer(weighted_logits(logits, self.weights), k, self.class_names)

    async def ping(self) -> dict[str, str]:
        """Each member's health, asked directly (what /healthz reports)."""
        async def one(name: str) -> str:
            try:
                await asyncio.wait_for(awaitable(self.members[name].stats.remote()), HEALTH_TIMEOUT_S)
                return "ok"
            except Exception as exc:  # noqa: BLE001 - any failure is "not healthy", with its name
                return f"unavailable ({type(exc).__name__})"

        states = await asyncio.gather(*(one(n) for n in self.names))
        return dict(zip(self.names, states))


async def awaitable(response: Any) -> Any:
    """A coroutine around a DeploymentResponse, for asyncio.wait_for."""
    return await response
