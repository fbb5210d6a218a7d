"""How a trial uses its device: numeric precision (autocast, loss scaling) and torch.compile.

``train.precision`` (``skelray.config.TrainSpec``):
  auto  bf16 autocast on a CUDA GPU that supports it (Ampere and later), fp16 with a loss
        scaler on older GPUs, fp32 on the CPU (CPU autocast is slower than fp32 for these
        convolutions, and its logits would differ from the CPU-trained baselines)
  fp32  no autocast
  bf16  bf16 autocast, on CUDA or the CPU (the CPU form exists to test the GPU path here)
  fp16  fp16 autocast with a GradScaler; CUDA only
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from skelray.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    """What ``train.precision`` resolved to on one device."""

    name: str  # fp32, bf16 or fp16
    device_type: str  # cuda or cpu
    autocast: torch.dtype | None  # None: no autocast

    @property
    def scaled(self) -> bool:
        """fp16 needs its loss scaled so small gradients do not underflow; bf16 does not."""
        return self.autocast == torch.float16

    def context(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.autocast or torch.float32,
                              enabled=self.autocast is not None)

    def scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type, enabled=self.scaled)


def _bf16_ok() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_precision(precision: str, device: torch.device | str) -> Precision:
    """``train.precision`` on ``device``; a ConfigError names the field when it cannot run there."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}'", where="train.precision",
                          fix=f"use one of {', '.join(PRECISIONS)}")
    cuda = device.type == "cuda"
    if precision == "auto":
        precision = ("bf16" if _bf16_ok() else "fp16") if cuda else "fp32"
    if precision == "fp32":
        return Precision("fp32", device.type, None)
    if precision == "fp16":
        if not cuda:
            raise ConfigError("fp16 mixed precision needs a CUDA GPU, but the trial runs on the CPU",
                              where="train.precision", fix="use auto (fp32 on the CPU), fp32 or bf16")
        return Precision("fp16", "cuda", torch.float16)
    if cuda and not _bf16_ok():
        raise ConfigError("this GPU does not support bf16", where="train.precision",
                          fix="use auto (fp16 with a loss scaler there) or fp16")
    return Precision("bf16", device.type, torch.bfloat16)


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(model)`` when ``train.compile`` is on. The compiled module shares the
    model's parameters, so the optimiser, checkpoints and exports keep using ``model``."""
    return torch.compile(model) if enabled else model
