"""Size and speed of a trained model's inference form: params, MACs, latency."""

from __future__ import annotations

import time

import torch
from torch import nn


@torch.inference_mode()
def latency_ms(model: nn.Module, input_shape: tuple[int, ...], *, device: str = "cpu", repeats: int = 5,
               warmup: int = 2) -> float:
    """Median wall time of one forward pass in milliseconds (CUDA-synchronised on GPU)."""
    model = model.to(device).eval()
    x = torch.randn(*input_shape, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        model(x)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return times[len(times) // 2]


def inference_form(model: nn.Module) -> nn.Module:
    """What export will ship: compacted when sparse, then fused."""
    from skelray.models import fuse

    try:
        from skelray.sparsity import compact, is_sparse
    except ImportError:  # sparsity not installed in this build
        return fuse(model)
    return fuse(compact(model)) if is_sparse(model) else fuse(model)


def measure(model: nn.Module, sample_shape: tuple[int, ...], *, device: str = "cpu",
            batches: tuple[int, ...] = (1, 64)) -> dict[str, float]:
    """Params and MACs per clip of the inference form, and its latency at each batch size."""
    from skelray.models import profile

    deployed = inference_form(model).cpu()
    params, macs = profile(deployed, (1, *sample_shape))
    out: dict[str, float] = {"params": float(params), "macs": float(macs)}
    for b in batches:
        # Fewer repeats at the large batch: it is slow on CPU and its median is already stable.
        out[f"latency_ms_b{b}"] = latency_ms(deployed, (b, *sample_shape), device=device,
                                             repeats=5 if b < 16 else 3, warmup=1)
    return out
