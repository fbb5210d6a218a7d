"""A training epoch on the CPU with prefetch on and off, beside the model's step alone.

    .venv/bin/python benchmarks/bench_step.py             # NTU-shaped clips, HPI-GCN-RP width 0.25
    .venv/bin/python benchmarks/bench_step.py --quick     # a smoke run in seconds
    .venv/bin/python benchmarks/bench_step.py --compile   # also eager vs torch.compile (slow to compile)

``train_epoch`` runs over the same NTU-shaped clips (2 persons, 60-140 raw frames, 64 out,
rotation, scale and mirror on) with ``prefetch_batches`` 0 (each batch prepared in the step's
thread) and 2 (prepared in a background thread while the step runs), epochs taking turns
(``_timing.time_interleaved``). Beside them: one training step on a ready batch (the model
alone) and one batch through ``Preprocess.batch`` (the pipeline alone). Without prefetch an
epoch step costs about model + pipeline; with it, about the larger of the two, when there
is a core free for the pipeline's thread (torch is held to ``--threads``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _timing import time_interleaved  # benchmarks/ is on sys.path when run as a script
from bench_input import ntu_clips
from rich.console import Console
from rich.table import Table
from torch import nn

from skelray.data.transforms import Preprocess
from skelray.models import create_model
from skelray.train.loop import Split, make_optimizer, make_schedule, train_epoch


class _PerClip(Preprocess):
    """The per-clip reference pipeline in the loop's place (``--per-clip``): a slower feed, so
    the overlap prefetch gives shows on a small model."""

    def batch(self, clips, *, train: bool = False, rng=None, per_clip: bool = True):
        return super().batch(clips, train=train, rng=rng, per_clip=True)


def _epoch_runner(model: nn.Module, split: Split, pp: Preprocess, batch: int, prefetch: int, **kwargs):
    opt = make_optimizer(model, "sgd", 0.01)
    sched = make_schedule(opt, kind="cosine", epochs=1000, steps_per_epoch=len(split) // batch)
    rng = np.random.default_rng(0)
    return lambda: train_epoch(model, split, pp, opt, sched, batch_size=batch, rng=rng,
                               prefetch_batches=prefetch, **kwargs)


def _step_runner(model: nn.Module, x: torch.Tensor, y: torch.Tensor, forward: nn.Module | None = None):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    run = forward if forward is not None else model

    def step() -> None:
        loss = nn.functional.cross_entropy(run(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="steps per timed epoch")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training step")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per setting")
    parser.add_argument("--compile", action="store_true", help="also time a torch.compile'd step")
    parser.add_argument("--per-clip", action="store_true", help="feed with the per-clip reference pipeline")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 8, 2 steps, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.steps, args.repeats, args.frames = 8, 2, 2, 32
    torch.set_num_threads(args.threads)
    clips = ntu_clips(args.batch * args.steps)
    labels = np.arange(len(clips)) % 60
    split = Split(clips, labels)
    pp = (_PerClip if args.per_clip else Preprocess)("ntu25", frames=args.frames, persons=2, rotate_degrees=15.0,
                                                      scale=(0.9, 1.1), mirror=True)
    torch.manual_seed(0)
    base = create_model("hpigcn_rp", num_classes=60, layout="ntu25", num_persons=2, width=args.width)
    models = {name: create_model("hpigcn_rp", num_classes=60, layout="ntu25", num_persons=2, width=args.width)
              for name in ("off", "on", "alone")}
    for m in models.values():
        m.load_state_dict(base.state_dict())
    runs = {"prefetch off": _epoch_runner(models["off"], split, pp, args.batch, 0),
            "prefetch on": _epoch_runner(models["on"], split, pp, args.batch, 2)}
    epoch = time_interleaved(runs, None, args.repeats, warmup=1, step=lambda f, _: f())
    x = torch.from_numpy(pp.batch(clips[:args.batch], train=True, rng=np.random.default_rng(0)))
    y = torch.from_numpy(labels[:args.batch].astype(np.int64))
    alone = {"model step": _step_runner(models["alone"], x, y),
             "pipeline batch": lambda: pp.batch(clips[:args.batch], train=True, rng=np.random.default_rng(1))}
    if args.compile:
        twin = create_model("hpigcn_rp", num_classes=60, layout="ntu25", num_persons=2, width=args.width)
        twin.load_state_dict(base.state_dict())
        compiled = torch.compile(twin.train())
        started = time.perf_counter()
        step = _step_runner(twin, x, y, forward=compiled)
        step()  # compiles the forward and the backward
        compile_s = time.perf_counter() - started
        alone["model step, compiled"] = step
    parts = time_interleaved(alone, None, args.repeats * 2, warmup=1, step=lambda f, _: f())
    table = Table(title=f"CPU, torch {args.threads} thread(s), batch {args.batch}, 2 persons, 60-140 -> "
                        f"{args.frames} frames, hpigcn_rp width {args.width}, {'per-clip' if args.per_clip else 'batched'} "
                        f"pipeline (median of {args.repeats})")
    for column in ("what", "ms / step", "vs prefetch off"):
        table.add_column(column, justify="right")
    off = epoch["prefetch off"] / args.steps
    for name in ("prefetch off", "prefetch on"):
        per = epoch[name] / args.steps
        table.add_row(f"epoch, {name}", f"{per * 1e3:.1f}", f"{off / per:.2f}x")
    for name, sec in parts.items():
        table.add_row(name, f"{sec * 1e3:.1f}", "")
    console = Console()
    console.print(table)
    if args.compile:
        console.print(f"torch.compile: first step (compiling) took {compile_s:.0f} s; "
                      f"step {parts['model step, compiled'] * 1e3:.1f} ms vs eager {parts['model step'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
