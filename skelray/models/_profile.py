"""Parameter and multiply-accumulate counts, measured by running the model once.

Counted: convolutions, linear layers, and every module with a ``count_macs(inputs, output)``
method (the graph-conv ``Einsum`` products: adjacency and attention). Not counted: BN,
activations, pooling, element-wise adds, the input BN (cheap, and each counter disagrees
about them anyway, so published numbers leave them out too).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from skelray.errors import ConfigError


def _conv_macs(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    assert isinstance(module, nn.modules.conv._ConvNd)
    per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return output.numel() * per_output


def _linear_macs(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    assert isinstance(module, nn.Linear)
    return output.numel() * module.in_features


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def profile(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(parameters, MACs)`` of one forward pass on an input of ``input_shape`` (N, M, T, V, C).

    MACs are for the whole input: divide by ``N * M`` for a per-person-clip figure. The model
    runs once in eval mode on zeros; its mode and statistics are left as they were.
    """
    if len(input_shape) != 5 or any(int(d) < 1 for d in input_shape):
        raise ConfigError(f"input_shape must be 5 positive sizes (N, M, T, V, C), got {tuple(input_shape)}",
                          where="input_shape")
    total = 0

    def hook(counter):
        def run(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            nonlocal total
            total += int(counter(module, inputs, output))
        return run

    handles = []
    for m in model.modules():
        if callable(getattr(m, "count_macs", None)):
            handles.append(m.register_forward_hook(hook(lambda mod, i, o: mod.count_macs(i, o))))
        elif isinstance(m, nn.modules.conv._ConvNd):
            handles.append(m.register_forward_hook(hook(_conv_macs)))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(hook(_linear_macs)))
    training = {m: m.training for m in model.modules()}
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(tuple(int(d) for d in input_shape), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        for m, mode in training.items():
            m.training = mode
    return count_params(model), total
