"""Size, structure and speed of a model's inference form (``skelray.models.inference_form``: what
export ships).

- ``sizes(model, sample_shape)``: params and MACs per clip (exact, cheap) and the *structure key*
  of the inference form and its input shape. A trial records these in its checkpoints instead
  of timing itself: a latency timed while other trials train beside it is noise (identical
  networks measured several-fold apart), so a sweep times each distinct key once, alone on a
  node (``skelray.sweep.costs``).
- ``structure_key(module, sample_shape)``: equal for identical architectures whatever their
  weights; different when anything that shapes the computation differs (width, the fused PA
  shape, compacted channel counts, kernel/stride, mirror TTA, frames, persons, joints, channels).
- ``time_forward(module, input_shape)``: the timing rule every measurement uses (below).
- ``measure(model, sample_shape)``: sizes plus latency timed here and now; what a trial run
  alone (``run_trial`` without a sweep) reports.

The timing rule: warm up (at least 3 calls and 0.1 s), then time blocks of calls (each block at
least ~50 ms, at least one call) and take each block's median. Stop once the last 3 block
medians lie within 5% of one another ((max - min) / median <= 0.05), or after ``max_seconds``
(10 s; then ``converged`` is false, and the 3 consecutive blocks with the smallest relative
range are used: the stretch least disturbed by whatever else loaded the machine). The latency
is the median of every call in those 3 blocks; ``spread`` is their relative range;
``repeats`` counts the timed calls.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from skelray import record

RELATIVE_SPREAD = 0.05  # the last WINDOW block medians must lie within this of their median
WINDOW = 3  # block medians compared
BLOCK_SECONDS = 0.05  # a block's target duration
WARMUP_CALLS, WARMUP_SECONDS = 3, 0.1
MAX_SECONDS = 10.0  # per batch size


# -- structure -------------------------------------------------------------------------------------
def _shapes(value: Any) -> Any:
    """The shapes of a call's tensors (nested in tuples, lists or dicts), for the trace."""
    if isinstance(value, torch.Tensor):
        return [list(value.shape), str(value.dtype)]
    if isinstance(value, (tuple, list)):
        return [_shapes(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _shapes(v) for k, v in sorted(value.items())}
    return None


def describe_structure(module: nn.Module, sample_shape: tuple[int, ...]) -> dict[str, Any]:
    """What the structure key hashes: the per-clip input shape; for every module of the tree
    its path, class, ``extra_repr`` (a conv's channels, kernel, stride, groups...) and each own
    parameter's and buffer's name, shape and dtype; and the trace of one forward pass on a
    zero clip: which module ran, on what input and output shapes (so a mode that changes the
    computation, such as mirror TTA's doubled batch, changes the key). Weight values never
    enter, nor do settings the inference form does not compute with (dropout, or how many PA
    matrices were summed into the fused one)."""
    modules, calls, handles = [], [], []
    for path, m in module.named_modules():
        identity = isinstance(m, nn.modules.dropout._DropoutNd)  # the identity in eval mode
        tensors = [[kind, name, list(t.shape), str(t.dtype)]
                   for kind, items in (("p", m.named_parameters(recurse=False)),
                                       ("b", m.named_buffers(recurse=False)))
                   for name, t in items if t is not None]
        modules.append({"path": path, "class": f"{type(m).__module__}.{type(m).__qualname__}",
                        "repr": "" if identity else m.extra_repr(), "tensors": tensors})
        handles.append(m.register_forward_hook(
            lambda mod, args, out, path=path: calls.append([path, _shapes(args), _shapes(out)])))
    training = {m: m.training for m in module.modules()}
    try:
        module.eval()
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.inference_mode():
            module(torch.zeros((1, *(int(d) for d in sample_shape)), device=device))
    finally:
        for h in handles:
            h.remove()
        for m, mode in training.items():
            m.training = mode
    return {"input": [int(d) for d in sample_shape], "modules": modules, "calls": calls}


def structure_key(module: nn.Module, sample_shape: tuple[int, ...]) -> str:
    """A short hash of ``describe_structure``: pass the *inference form* and one clip's shape
    ``(M, T, V, C)`` (no batch dimension: latency is measured per batch size under one key)."""
    text = json.dumps(describe_structure(module, sample_shape), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def sizes(model: nn.Module, sample_shape: tuple[int, ...]) -> dict[str, Any]:
    """``{params, macs, nonzero_params, structure}`` of ``model``'s inference form on one clip of ``sample_shape``
    ``(M, T, V, C)``; ``model`` (training form, masked or not) is left as it was."""
    from skelray.models import inference_form, profile

    was_training = model.training
    try:
        deployed = inference_form(model).cpu().eval()
    finally:
        model.train(was_training)
    params, macs = profile(deployed, (1, *sample_shape))
    return {record.PARAMS: float(params), record.MACS: float(macs), record.NONZERO_PARAMS: nonzero_params(deployed),
            record.STRUCTURE: structure_key(deployed, sample_shape)}


def nonzero_params(deployed: nn.Module) -> float:
    """Parameters of ``deployed`` (an inference form) that are not zero: a sparse model's
    deployed size, counted after compaction and fusion (fusing sums branch kernels, so the
    fused kernel keeps a weight wherever any branch kept one)."""
    with torch.no_grad():
        return float(sum(int(torch.count_nonzero(p)) for p in deployed.parameters()))


# -- timing ----------------------------------------------------------------------------------------
@dataclass
class Timing:
    """One batch size's latency under the timing rule (module docstring)."""

    median_ms: float
    spread: float  # (max - min) / median of the last WINDOW block medians
    repeats: int  # timed calls, warm-up excluded
    blocks: int
    converged: bool  # spread <= RELATIVE_SPREAD before max_seconds
    seconds: float  # wall time spent on this batch size, warm-up included


@torch.inference_mode()
def time_forward(module: nn.Module, input_shape: tuple[int, ...], *, device: str = "cpu",
                 max_seconds: float = MAX_SECONDS, relative_spread: float = RELATIVE_SPREAD) -> Timing:
    """Latency of one forward pass of ``module`` (eval mode) on a random input of
    ``input_shape`` ``(N, M, T, V, C)``, by the rule of the module docstring (CUDA-synchronised
    on a GPU)."""
    module = module.to(device).eval()
    x = torch.randn(*input_shape, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    started = time.perf_counter()

    def call() -> float:
        t0 = time.perf_counter()
        module(x)
        sync()
        return time.perf_counter() - t0

    warm = []
    while len(warm) < WARMUP_CALLS or (time.perf_counter() - started < WARMUP_SECONDS
                                       and time.perf_counter() - started < max_seconds / 4):
        warm.append(call())
    per_block = max(1, math.ceil(BLOCK_SECONDS / max(min(warm), 1e-6)))
    blocks: list[list[float]] = []
    medians: list[float] = []
    spread, converged = math.inf, False
    while True:
        block = [call() for _ in range(per_block)]
        blocks.append(block)
        medians.append(statistics.median(block))
        if len(medians) >= WINDOW:
            spread = _spread(medians[-WINDOW:])
            if spread <= relative_spread:
                converged = True
                break
        if time.perf_counter() - started >= max_seconds and len(medians) >= min(WINDOW, 2):
            break
    start = len(blocks) - min(WINDOW, len(blocks))
    if not converged:
        # Out of time: something else was loading the machine. The quietest stretch of WINDOW
        # blocks (the smallest relative range) is the one least disturbed by it.
        start = min(range(start + 1), key=lambda i: _spread(medians[i:i + WINDOW]))
        spread = _spread(medians[start:start + WINDOW])
    kept = [t for b in blocks[start:start + WINDOW] for t in b]
    return Timing(median_ms=statistics.median(kept) * 1e3, spread=float(spread),
                  repeats=sum(len(b) for b in blocks), blocks=len(blocks), converged=converged,
                  seconds=time.perf_counter() - started)


def _spread(medians: list[float]) -> float:
    return (max(medians) - min(medians)) / statistics.median(medians)


def latency_ms(model: nn.Module, input_shape: tuple[int, ...], *, device: str = "cpu",
               max_seconds: float = MAX_SECONDS) -> float:
    """Median wall time of one forward pass in milliseconds (``time_forward``'s median)."""
    return time_forward(model, input_shape, device=device, max_seconds=max_seconds).median_ms


def measure(model: nn.Module, sample_shape: tuple[int, ...], *, device: str = "cpu",
            batches: tuple[int, ...] = record.DEFAULT_LATENCY_BATCHES,
            max_seconds: float = MAX_SECONDS) -> dict[str, Any]:
    """``sizes`` plus the inference form's latency at each batch size, timed here and now: right
    when nothing else runs on the machine (a trial run on its own), noise inside a sweep."""
    from skelray.models import inference_form

    out = sizes(model, sample_shape)
    was_training = model.training
    try:
        deployed = inference_form(model)
    finally:
        model.train(was_training)
    for b in batches:
        out[record.latency_key(b)] = latency_ms(deployed, (b, *sample_shape), device=device,
                                                max_seconds=max_seconds)
    return out
