"""The input pipeline, batched vs clip by clip, on one core, side by side in one run.

    .venv/bin/python benchmarks/bench_input.py            # NTU-shaped: 2 persons, 60-140 raw frames, 25 joints
    .venv/bin/python benchmarks/bench_input.py --quick    # a smoke run in a second

Clips are NTU-shaped (random lengths, 25 joints, 2 persons), preprocessed for training to 64
frames with rotation, scale and mirror on: ``Preprocess.batch`` (vectorised over the batch)
against ``Preprocess.batch(per_clip=True)`` (one clip at a time, the reference). Both take
their draws from generators seeded alike, so their outputs must agree: the largest difference
is printed beside the speed. The two take turns batch by batch (``_timing.time_interleaved``);
numpy and torch are held to one thread.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy loads its BLAS
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import torch
from _timing import time_interleaved
from rich.console import Console
from rich.table import Table

from skelray.data.transforms import Preprocess


def ntu_clips(n: int, *, seed: int = 0, persons: int = 2, frames: tuple[int, int] = (60, 140),
              joints: int = 25) -> list[np.ndarray]:
    """``n`` random NTU-shaped clips ``(persons, T, joints, 3)`` with T in ``frames``, about 3 m
    from the camera as Kinect clips are; a few with an absent second person."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n):
        t = int(rng.integers(frames[0], frames[1] + 1))
        kp = (rng.standard_normal((persons, t, joints, 3)) * 0.3 + np.array([0.0, 0.2, 3.0])).astype(np.float32)
        if persons > 1 and i % 4 == 0:
            kp[1:] = 0  # one actor only, as in most NTU clips
        clips.append(kp)
    return clips


def pipelines(pp: Preprocess, clips: list[np.ndarray], seed: int) -> dict[str, object]:
    """Two callables over the same clips, each with its own generator seeded alike."""
    gens = {"batched": np.random.default_rng(seed), "per-clip": np.random.default_rng(seed)}
    return {
        "batched": lambda: pp.batch(clips, train=True, rng=gens["batched"]),
        "per-clip": lambda: pp.batch(clips, train=True, rng=gens["per-clip"], per_clip=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--frames", type=int, default=64, help="frames out per clip")
    parser.add_argument("--stream", default="j", choices=["j", "b", "jm", "bm"])
    parser.add_argument("--repeats", type=int, default=20, help="timed batches per pipeline")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 16, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats = 16, 3
    torch.set_num_threads(1)
    pp = Preprocess("ntu25", frames=args.frames, persons=2, stream=args.stream, rotate_degrees=15.0,
                    scale=(0.9, 1.1), mirror=True)
    clips = ntu_clips(args.batch * 4)
    # Equal draws, equal outputs: the same seed, every clip of the pool, both paths.
    gen_a, gen_b = np.random.default_rng(1), np.random.default_rng(1)
    diff = float(np.abs(pp.batch(clips, train=True, rng=gen_a)
                        - pp.batch(clips, train=True, rng=gen_b, per_clip=True)).max())
    same_state = gen_a.bit_generator.state == gen_b.bit_generator.state
    batch = clips[:args.batch]
    runs = pipelines(pp, batch, seed=2)
    seconds = time_interleaved(runs, None, args.repeats, warmup=1, step=lambda f, _: f())
    table = Table(title=f"Input pipeline, 1 thread, batch {args.batch}, 2 persons, 60-140 -> {args.frames} frames, "
                        f"stream {args.stream}, rotate+scale+mirror (median of {args.repeats})")
    for column in ("pipeline", "ms / batch", "clips/s", "speed-up"):
        table.add_column(column, justify="right")
    for name in ("per-clip", "batched"):
        table.add_row(name, f"{seconds[name] * 1e3:.2f}", f"{args.batch / seconds[name]:,.0f}",
                      f"{seconds['per-clip'] / seconds[name]:.1f}x")
    console = Console()
    console.print(table)
    console.print(f"max |batched - per-clip| for equal draws over {len(clips)} clips: {diff:.2e} "
                  f"(generators left in the same state: {same_state})")


if __name__ == "__main__":
    main()
