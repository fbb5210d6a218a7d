"""The deployments behind the HTTP ingress: Preprocess -> members -> Ensemble.

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
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from ray import serve

from skelray.ensemble.combine import softmax, top_k, weighted_logits
from skelray.export.bundle import StreamPlan, ensure_layout, load_member, run_streams
from skelray.export.manifest import read_manifest

HEALTH_TIMEOUT_S = 10.0
# A batch still running after this long means the replica is stuck (a forward of a batch of 16
# takes well under a second on a CPU core); Serve's health check then replaces the replica.
STALL_S = 60.0


class Watchdog:
    """What ``Member.check_health`` checks: no batch has been running longer than ``stall_s``,
    and, when idle, a one-clip forward (``probe``) still gives finite logits of the right shape.

    The member calls ``started()`` / ``finished()`` around each batch; ``check()`` raises
    ``RuntimeError`` saying what is wrong, which is how a Serve health check fails.
    """

    def __init__(self, name: str, probe: Callable[[], np.ndarray], num_classes: int, *,
                 stall_s: float = STALL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.probe, self.num_classes = name, probe, num_classes
        self.stall_s, self.clock = stall_s, clock
        self.running: dict[int, float] = {}  # batch id -> start time
        self.next_id = 0

    def started(self) -> int:
        self.next_id += 1
        self.running[self.next_id] = self.clock()
        return self.next_id

    def finished(self, batch: int) -> None:
        self.running.pop(batch, None)

    def check(self) -> None:
        if self.running:
            age = self.clock() - min(self.running.values())
            if age > self.stall_s:
                raise RuntimeError(f"member {self.name}: a batch has been running for {age:.0f} s "
                                   f"(limit {self.stall_s:.0f} s); the replica looks stuck")
            return  # busy and making progress: the batches are the proof of life
        out = np.asarray(self.probe())
        if out.shape != (1, self.num_classes) or not np.isfinite(out).all():
            raise RuntimeError(f"member {self.name}: a one-clip forward gave "
                               f"{'non-finite logits' if out.shape == (1, self.num_classes) else out.shape}, "
                               f"expected {self.num_classes} finite logits")


@serve.deployment
class Member:
    """One fused member; clips from concurrent requests are batched into one forward pass."""

    def __init__(self, bundle: str, name: str, verify_weights: bool = True) -> None:
        import ray
        import torch

        manifest = read_manifest(bundle)
        ensure_layout(manifest)
        self.spec = next(m for m in manifest.members if m.name == name)
        resources = ray.get_runtime_context().get_assigned_resources()
        # One torch thread per CPU granted: more would fight the other replicas for cores.
        torch.set_num_threads(max(1, int(resources.get("CPU", 1))))
        self.device = "cuda" if resources.get("GPU", 0) > 0 and torch.cuda.is_available() else "cpu"
        self.model = load_member(bundle, self.spec, device=self.device, verify=verify_weights)
        self.forwards = 0
        m = self.spec.model
        pp = self.spec.preprocess
        probe_clip = np.zeros((1, int(pp["persons"]), int(pp["frames"]), manifest.num_joints,
                               m.in_channels), dtype=np.float32)
        self.watchdog = Watchdog(name, lambda: self._run(probe_clip), m.num_classes)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: batching can be retuned without restarting the replica."""
        self.forward.set_max_batch_size(int(config.get("max_batch_size", 16)))
        self.forward.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.005)))

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def forward(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        self.forwards += 1
        batch = self.watchdog.started()
        try:
            # In a worker thread, so the replica keeps queueing the next batch meanwhile.
            out = await asyncio.to_thread(self._run, np.stack(clips))
        finally:
            self.watchdog.finished(batch)
        return list(out)

    def stats(self) -> dict[str, Any]:
        return {"name": self.spec.name, "forwards": self.forwards, "pid": os.getpid(), "device": self.device}

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
        probs = softmax(weighted_logits(logits, self.weights))
        return {"probabilities": probs, "top_k": top_k(probs, k, self.class_names)}

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
