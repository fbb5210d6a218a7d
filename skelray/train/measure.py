"""Size and speed of a trained model's inference form: params, MACs, latency."""

from __future__ import annotations

import time

import torch
from torch import nn

from skelray import record


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


def measure(model: nn.Module, sample_shape: tuple[int, ...], *, device: str = "cpu",
            batches: tuple[int, ...] = (1, 64)) -> dict[str, float]:
    """Params and MACs per clip of the inference form (``skelray.models.inference_form``: what
    export ships), and its latency at each batch size."""
    from skelray.models import inference_form, profile

    deployed = inference_form(model).cpu()
    params, macs = profile(deployed, (1, *sample_shape))
    out: dict[str, float] = {record.PARAMS: float(params), record.MACS: float(macs)}
    for b in batches:
        # Fewer repeats at the large batch: it is slow on CPU and its median is already stable.
        out[record.latency_key(b)] = latency_ms(deployed, (b, *sample_shape), device=device,
                                             repeats=5 if b < 16 else 3, warmup=1)
    return out
