"""The training loop, free of Ray: one epoch of SGD/AdamW, evaluation, optimiser and schedule.

The Tune trial (``skelray.train.trial``) and the plain-Python baseline of the engine-overhead
benchmark both call these functions, so the two time exactly the same work.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from skelray.data.transforms import Preprocess


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Split:
    """A split's raw clips and labels; clips are (M, T, V, C) views, never copied here. ``ids``
    names the clips in order (the dataset's sequence ids) where the split came from a dataset."""

    clips: Sequence[np.ndarray]
    labels: np.ndarray
    ids: Sequence[str] = ()

    def __len__(self) -> int:
        return len(self.labels)


def batches(split: Split, pp: Preprocess, batch_size: int, *, train: bool,
            rng: np.random.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Preprocess and stack clips into ``(N, M, T, V, C)`` batches; shuffled when training."""
    order = rng.permutation(len(split)) if train and rng is not None else np.arange(len(split))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        if train and len(idx) < 2 and len(order) >= 2:
            continue  # BatchNorm cannot train on a single sample
        x = pp.batch([split.clips[i] for i in idx], train=train, rng=rng)
        yield torch.from_numpy(x), torch.from_numpy(split.labels[idx].astype(np.int64))


def no_decay_names(model: nn.Module) -> set[str]:
    """Parameters that get no weight decay: biases and norm weights (1-d), sparsity mask
    scores, and what a module lists in its ``NO_WEIGHT_DECAY`` class attribute (the learnable
    adjacencies: HPI-GCN's ``pa`` matrices, ST-GCN's edge ``importance``).

    The official ST-GCN and HPI-GCN code decays every parameter. skelray does not decay the
    adjacency: decay pulls it towards the empty graph rather than towards the skeleton, and
    without it PA count acts on the summed adjacency exactly as a learning-rate factor (every
    matrix gets the same gradient), which is what the PA-count study compares against.
    """
    names = adjacency_names(model)
    for pname, p in model.named_parameters():
        if p.ndim <= 1 or "score" in pname.rsplit(".", 1)[-1]:
            names.add(pname)
    return names


def adjacency_names(model: nn.Module) -> set[str]:
    """The learnable adjacencies: what modules list in their ``NO_WEIGHT_DECAY`` attribute."""
    names: set[str] = set()
    for mname, module in model.named_modules():
        for pname in getattr(type(module), "NO_WEIGHT_DECAY", ()):
            if isinstance(getattr(module, pname, None), nn.Parameter):
                names.add(f"{mname}.{pname}" if mname else pname)
    return names


def make_optimizer(model: nn.Module, name: str, lr: float, *, momentum: float = 0.9, nesterov: bool = True,
                   weight_decay: float = 5e-4, adjacency_lr_scale: float = 1.0) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW with ``weight_decay`` on every parameter but ``no_decay_names``.

    ``adjacency_lr_scale`` != 1 puts the ``adjacency_names`` parameters in a group of their own
    with ``lr * adjacency_lr_scale`` (the schedule's factor multiplies every group's rate); at 1
    they stay in the no-decay group, so optimiser states saved before the option still load."""
    skip = no_decay_names(model)
    adjacency = adjacency_names(model) if adjacency_lr_scale != 1.0 else set()
    decay, no_decay, adj = [], [], []
    for pname, p in model.named_parameters():
        if p.requires_grad:
            (adj if pname in adjacency else no_decay if pname in skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if adj:
        groups.append({"params": adj, "weight_decay": 0.0, "lr": lr * adjacency_lr_scale})
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")


def make_schedule(optimizer: torch.optim.Optimizer, *, kind: str, epochs: int, steps_per_epoch: int,
                  warmup_epochs: float = 0.0, milestones: Sequence[int] = (), gamma: float = 0.1
                  ) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step multiplier: linear warm-up, then cosine to zero or step decay at epoch milestones."""
    total = max(1, epochs * steps_per_epoch)
    warm = int(warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if kind == "cosine":
            progress = (step - warm) / max(1, total - warm)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if kind == "step":
            epoch = step // max(1, steps_per_epoch)
            return gamma ** sum(epoch >= m for m in milestones)
        raise ValueError(f"unknown schedule {kind!r}")

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_epoch(model: nn.Module, split: Split, pp: Preprocess, optimizer: torch.optim.Optimizer,
                schedule: torch.optim.lr_scheduler.LRScheduler, *, batch_size: int, rng: np.random.Generator,
                label_smoothing: float = 0.0, device: torch.device | str = "cpu",
                extra_loss=None, precision: str = "fp32", grad_clip: float | None = None,
                after_step: Callable[[nn.Module], None] | None = None, prefetch_batches: int = 0,
                forward: nn.Module | None = None) -> dict[str, float]:
    """One pass over the training split. ``extra_loss(model, labels)`` adds e.g. a sparsity
    penalty or an ensemble's per-member losses (computed in the forward just run);
    ``after_step(model)`` runs after every optimiser step (e.g. ``WeightAverage.update``).

    ``precision``: ``train.precision`` (``skelray.train.accel``). ``prefetch_batches``: batches
    prepared ahead in a background thread (0: none); the same batches either way.
    ``forward``: the module that runs the forward pass, e.g. ``torch.compile(model)``
    (default ``model``). The loss and accuracy are summed on the device and read once, at
    the end: a read per step would make the host wait for the GPU every step."""
    from skelray.train.accel import resolve_precision
    from skelray.train.prefetch import prefetch

    model.train()
    device = torch.device(device)
    run = forward if forward is not None else model
    mode = resolve_precision(precision, device)
    scaler = mode.scaler()
    # float64 on the device: the same sums, in the same order, as Python floats would give.
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    pin = (lambda xy: (xy[0].pin_memory(), xy[1].pin_memory())) if device.type == "cuda" else None
    for x, y in prefetch(batches(split, pp, batch_size, train=True, rng=rng), prefetch_batches, prepare=pin):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with mode.context():
            logits = run(x)
            loss = nn.functional.cross_entropy(logits, y, label_smoothing=label_smoothing)
            if extra_loss is not None:
                loss = loss + extra_loss(model, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        if after_step is not None:
            after_step(model)
        total += len(y)
        correct += (logits.argmax(1) == y).sum()
        loss_sum += loss.detach().double() * len(y)
    return {"loss": float(loss_sum) / max(total, 1), "top1": int(correct) / max(total, 1)}


class WeightAverage:
    """An exponential moving average of a model's weights, updated after every optimiser step.

    ``module`` is a copy of the model that holds the average; it is what gets evaluated and
    saved. Floating-point parameters and buffers move towards the live model each step;
    integer buffers (BatchNorm's batch counter) are copied. The decay ramps up as
    ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the random initial weights do
    not linger in the average of a short run. When the caller re-estimates BatchNorm
    statistics on ``module`` (precise BN), the running statistics keep averaging from those.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        live = model.state_dict(keep_vars=True)
        for name, avg in self.module.state_dict(keep_vars=True).items():
            if avg.dtype.is_floating_point:
                avg.lerp_(live[name].detach(), 1.0 - decay)
            else:
                avg.copy_(live[name])

    def load(self, weights: dict[str, torch.Tensor], updates: int) -> None:
        """Restore the average from a checkpoint (its weights and how many updates made it)."""
        self.module.load_state_dict(weights)
        self.updates = int(updates)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, split: Split, pp: Preprocess, *, batch_size: int, num_batches: int,
                   rng: np.random.Generator, device: torch.device | str = "cpu") -> None:
    """Precise BN: re-estimate every BatchNorm's statistics as a plain average over ``num_batches``
    training batches with the current weights. Running averages (momentum 0.1) lag the weights
    by tens of steps, which makes early-epoch validation of short runs meaningless."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or num_batches <= 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for i, (x, _) in enumerate(batches(split, pp, batch_size, train=True, rng=rng)):
        if i >= num_batches:
            break
        model(x.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


@torch.inference_mode()
def predict(model: nn.Module, split: Split, pp: Preprocess, *, batch_size: int = 64,
            device: torch.device | str = "cpu") -> np.ndarray:
    """Logits for every clip of a split, in order, as float32 ``(N, num_classes)``."""
    model.eval()
    outs = [model(x.to(device)).float().cpu() for x, _ in batches(split, pp, batch_size, train=False)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), dtype=np.float32)


def metrics_from_logits(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1, top-5 and cross-entropy loss of a split's logits."""
    if len(labels) == 0:
        return {"top1": float("nan"), "top5": float("nan"), "loss": float("nan")}
    t = torch.from_numpy(logits)
    y = torch.from_numpy(labels.astype(np.int64))
    k = min(5, t.shape[1])
    top = t.topk(k, dim=1).indices
    return {
        "top1": float((top[:, 0] == y).float().mean()),
        "top5": float((top == y[:, None]).any(1).float().mean()),
        "loss": float(nn.functional.cross_entropy(t, y)),
    }


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    pred = logits.argmax(1)
    return [float((pred[labels == c] == c).mean()) if (labels == c).any() else float("nan")
            for c in range(num_classes)]
