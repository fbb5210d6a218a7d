"""What a serving replica holds: its members loaded for the resources Ray granted it, the
health watchdog, and the fused runner that turns a batch of raw clips into ensemble logits.

Both graphs load members here (``load_members``): a per-member ``Member`` replica loads one,
the fused ``Ingress`` replica loads them all. ``FusedEnsemble.logits`` is the whole model cost
of a request in the fused graph: the bundle's stream preprocessing (``run_streams``), one
forward per member on the stacked batch, and the weighted sum (``skelray.ensemble.combine``),
the same steps as the offline ``Bundle.logits``. Nothing here imports Ray Serve.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skelray.export.bundle import Bundle, ensure_layout, load_member
from skelray.export.manifest import Manifest, read_manifest

# A batch still running after this long means the replica is stuck (a forward of a batch of 16
# takes well under a second on a CPU core); Serve's health check then replaces the replica.
STALL_S = 60.0


class Watchdog:
    """What a replica's ``check_health`` checks: no batch has been running longer than
    ``stall_s``, and, when idle, a one-clip forward (``probe``) still gives finite logits of the
    right shape.

    The replica calls ``started()`` / ``finished()`` around each batch; ``check()`` raises
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


def replica_device() -> tuple[str, int]:
    """``(device, torch threads)`` for this replica from the resources Ray assigned it: CUDA
    when it holds a GPU, and one torch thread per whole CPU granted (at least one; more would
    fight the other replicas for cores). Sets the thread count, which is per process."""
    import ray
    import torch

    # Outside a Ray worker (a test, a script) there is nothing assigned: one CPU.
    resources = ray.get_runtime_context().get_assigned_resources() if ray.is_initialized() else {}
    threads = max(1, int(resources.get("CPU", 1)))
    torch.set_num_threads(threads)
    device = "cuda" if resources.get("GPU", 0) > 0 and torch.cuda.is_available() else "cpu"
    return device, threads


def apply_batching(batched: Any, config: dict[str, Any]) -> None:
    """A replica's ``user_config`` (``config.plan`` writes it) applied to its ``@serve.batch``
    method, so batching is retuned without restarting the replica."""
    batched.set_max_batch_size(int(config.get("max_batch_size", 16)))
    batched.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.005)))


def load_members(bundle: str, names: Sequence[str] | None = None, *, verify: bool = True,
                 dtype: str = "float32") -> tuple[Manifest, dict[str, Any], str]:
    """The manifest and the fused models of ``names`` (default: every member), loaded for this
    replica's device and threads at ``dtype`` (one the export checked; see ``load_member``).
    The one place a serving replica loads a member."""
    manifest = read_manifest(bundle)
    ensure_layout(manifest)
    device, _ = replica_device()
    wanted = [m for m in manifest.members if names is None or m.name in names]
    models = {m.name: load_member(bundle, m, device=device, verify=verify, dtype=dtype) for m in wanted}
    return manifest, models, device


def run_model(model: Any, x: np.ndarray, device: str) -> np.ndarray:
    """One forward pass of a fused member on a stacked ``(N, M, T, V, C)`` batch, its input cast
    to the dtype the member was loaded at; float32 logits."""
    import torch

    weight = next(model.parameters(), None)  # a module without parameters takes float32
    dtype = weight.dtype if weight is not None else torch.float32
    with torch.inference_mode():
        return model(torch.from_numpy(x).to(device, dtype)).float().cpu().numpy()


def probe_clip(manifest: Manifest, name: str) -> np.ndarray:
    """A one-clip batch of zeros shaped like what member ``name`` takes after preprocessing."""
    spec = next(m for m in manifest.members if m.name == name)
    pp = spec.preprocess
    return np.zeros((1, int(pp["persons"]), int(pp["frames"]), manifest.num_joints, spec.model.in_channels),
                    dtype=np.float32)


class FusedEnsemble:
    """Every member in one replica: a batch of raw clips -> preprocessing -> one forward per
    member -> weighted logits. One watchdog per member, so a failing check names the member."""

    def __init__(self, bundle: str, verify: bool = True, dtype: str = "float32") -> None:
        self.manifest, self.models, self.device = load_members(bundle, verify=verify, dtype=dtype)
        # The offline ensemble over the same models dict: the steps are Bundle.logits' own.
        self.bundle = Bundle(Path(bundle), self.manifest, self.models, self.device, dtype)
        self.names = [m.name for m in self.manifest.members]
        self.forwards = self.clips = 0  # batched forward passes, and the clips they held
        self.watchdogs = {n: Watchdog(n, self._probe(n), self.manifest.num_classes) for n in self.names}

    def _probe(self, name: str) -> Callable[[], np.ndarray]:
        clip = probe_clip(self.manifest, name)
        return lambda: run_model(self.models[name], clip, self.device)

    def logits(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, classes)`` ensemble logits of raw clips, as ``Bundle.logits`` computes them."""
        self.forwards += 1
        self.clips += len(clips)
        batches = [w.started() for w in self.watchdogs.values()]
        try:
            return self.bundle.logits(clips)
        finally:
            for w, b in zip(self.watchdogs.values(), batches):
                w.finished(b)

    def check(self) -> dict[str, str]:
        """Every member's health check; raises the first failure (Serve then replaces the replica)."""
        for w in self.watchdogs.values():
            w.check()
        return {n: "ok" for n in self.names}
