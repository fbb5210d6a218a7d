"""The GPU path end to end, in one go: what a user (and we) run on a GPU node.

    .venv/bin/python benchmarks/gpu_check.py              # on one GPU: under 8 minutes
    .venv/bin/python benchmarks/gpu_check.py --dry-run    # the same steps at tiny size, on the CPU
    .venv/bin/python benchmarks/gpu_check.py --skip tests,sweep --bundle DIR   # a subset

On a machine without CUDA it says so, runs the dry run and exits 0. Steps:

1. tests: the GPU-marked tests (``pytest -m gpu``; skipped without CUDA).
2. train: full-width HPI-GCN-RP trained on synthetic NTU-shaped clips (2 persons, 60-140
   raw frames, 25 joints, 64 frames out, rotation, scale and mirror on) with the trial's
   loop (``train_epoch``: prefetch, ``precision: auto``): samples/s; the share of wall time
   the GPU was busy (the model's steps alone, timed on a ready batch, times the steps, over
   the epoch's wall time) and the share the input pipeline took (``Preprocess.batch`` of
   the same batches alone, over the same wall time). Both are estimates from timings side by side.
3. infer: the fused form at batch 64 in fp32 and bf16 (ms), beside the HPI-GCN repository's
   33 ms per batch of 64 on an RTX 3090 in fp32.
4. sweep: 4 trials at ``resources: {gpu: 0.25}`` on one GPU. Shown: how long all four ran
   at once (from their Tune results) and, on a GPU, the most processes ``nvidia-smi`` saw
   on it at once. The dry run declares one logical GPU to Ray, so Ray schedules the four
   trials onto it as it would onto a real one (they train on the CPU).
5. serve: a bundle (``--bundle``, or the sweep's first trial exported) loaded on the GPU in
   fp32 and bf16: its answers against the CPU's in fp32 (same top-1, logits within the
   export check's tolerance of each dtype). In-process (``load_bundle``), not over HTTP.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from _timing import time_interleaved  # benchmarks/ is on sys.path when run as a script
from bench_input import ntu_clips
from rich.console import Console
from rich.table import Table
from torch import nn

from skelray.data.transforms import Preprocess
from skelray.models import create_model, inference_form
from skelray.train.loop import Split, make_optimizer, make_schedule, train_epoch

REPO = Path(__file__).resolve().parents[1]
PAPER_MS = 33.0  # HPI-GCN-RP, batch 64, fp32, RTX 3090 (the authors' repository)
STEPS = ("tests", "train", "infer", "sweep", "serve")
console = Console()

# Sizes: (GPU, dry run). The GPU ones keep the whole check under 8 minutes on one GPU.
SIZES = {
    "width": (1.0, 0.125), "batch": (64, 8), "frames": (64, 16), "train_steps": (40, 2),
    "sweep_width": (0.5, 0.125), "sweep_frames": (32, 8), "sweep_cpu": (2.0, 0.5), "sweep_clips": (64, 8),
}


def size(name: str, gpu: bool):
    return SIZES[name][0 if gpu else 1]


def step_tests(gpu: bool, rows: list) -> None:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"]
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    summary = (out.stdout.strip().splitlines() or ["(no output)"])[-1]
    ok = out.returncode in (0, 5)  # 5: nothing collected or all deselected
    rows.append(("tests", "pytest -m gpu", summary, f"{time.perf_counter() - started:.0f} s"))
    if not ok:
        console.print(out.stdout[-3000:], out.stderr[-2000:])
        raise SystemExit("GPU-marked tests failed")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_train(gpu: bool, device: torch.device, rows: list) -> None:
    batch, steps = size("batch", gpu), size("train_steps", gpu)
    pp = Preprocess("ntu25", frames=size("frames", gpu), persons=2, rotate_degrees=15.0, scale=(0.9, 1.1),
                    mirror=True)
    clips = ntu_clips(batch * steps)
    split = Split(clips, np.arange(len(clips)) % 60)
    model = create_model("hpigcn_rp", num_classes=60, layout="ntu25", num_persons=2,
                         width=size("width", gpu)).to(device)
    opt = make_optimizer(model, "sgd", 0.01)
    sched = make_schedule(opt, kind="cosine", epochs=100, steps_per_epoch=steps)
    rng = np.random.default_rng(0)
    precision = "auto"

    def epoch() -> dict:
        return train_epoch(model, split, pp, opt, sched, batch_size=batch, rng=rng, device=device,
                           precision=precision, prefetch_batches=2)

    epoch()  # warm-up: kernels chosen, memory allocated
    _sync(device)
    started = time.perf_counter()
    metrics = epoch()
    _sync(device)
    wall = time.perf_counter() - started
    # The same steps on one batch already on the device (the model alone), and the same
    # batches through the pipeline alone.
    from skelray.train.accel import resolve_precision

    mode = resolve_precision(precision, device)
    x = torch.from_numpy(pp.batch(clips[:batch], train=True, rng=np.random.default_rng(1))).to(device)
    y = torch.from_numpy(split.labels[:batch].astype(np.int64)).to(device)

    def model_step() -> None:
        with mode.context():
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)

    def pipeline_batch() -> None:
        pp.batch(clips[:batch], train=True, rng=np.random.default_rng(2))

    t = time_interleaved({"model": model_step, "pipeline": pipeline_batch}, None, 5, 1, step=lambda f, _x: f())
    busy, feed = t["model"] * steps / wall, t["pipeline"] * steps / wall
    rows.append(("train", f"hpigcn_rp width {size('width', gpu)}, batch {batch}, {mode.name}, prefetch 2",
                 (f"{batch * steps / wall:,.0f} samples/s; {'GPU' if gpu else 'model'} busy {100 * min(busy, 1):.0f}%, "
                  f"input pipeline {100 * feed:.0f}% of wall"), f"loss {metrics['loss']:.2f}"))


@torch.inference_mode()
def step_infer(gpu: bool, device: torch.device, rows: list) -> None:
    model = create_model("hpigcn_rp", num_classes=60, layout="ntu25", num_persons=2, width=size("width", gpu))
    fused = inference_form(model.eval()).to(device).eval()
    x = torch.randn(64 if gpu else 4, 2, size("frames", gpu), 25, 3, device=device)
    half = inference_form(model.eval()).to(device=device, dtype=torch.bfloat16).eval()

    def run(m: nn.Module, inp: torch.Tensor) -> None:
        m(inp)
        _sync(device)

    t = time_interleaved({"fp32": fused, "bf16": half}, x, 10 if gpu else 2, 2 if gpu else 1,
                         step=lambda m, inp: run(m, inp.to(next(m.parameters()).dtype)))
    rows.append(("infer", f"fused, batch {len(x)}, T={x.shape[2]}",
                 f"fp32 {t['fp32'] * 1e3:.1f} ms, bf16 {t['bf16'] * 1e3:.1f} ms",
                 f"paper: {PAPER_MS:.0f} ms (RTX 3090, fp32, batch 64)"))


class _GpuProcesses:
    """The most compute processes ``nvidia-smi`` saw on the GPU at once, sampled in a thread."""

    def __init__(self) -> None:
        self.most, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                                 capture_output=True, text=True, check=False)
            self.most = max(self.most, len([ln for ln in out.stdout.splitlines() if ln.strip()]))

    def __enter__(self) -> _GpuProcesses:  # noqa: PYI034 - a private helper, never subclassed
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


def _all_at_once(sweep: Path) -> tuple[int, float]:
    """(trials, seconds during which every trial was running), from each trial's result.json."""
    spans = []
    for path in sweep.glob("run-*/*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            spans.append((rows[0]["timestamp"] - rows[0]["time_this_iter_s"], rows[-1]["timestamp"]))
    if not spans:
        return 0, 0.0
    return len(spans), max(0.0, min(end for _, end in spans) - max(start for start, _ in spans))


def step_sweep(gpu: bool, workdir: Path, rows: list) -> Path:
    import ray

    from skelray.runtime import start_ray
    from skelray.sweep.runner import run_sweep
    from skelray.sweep.spec import load_sweep

    spec = {
        "name": "gpu-check",
        "data": {"format": "synthetic", "layout": "ntu25", "num_classes": 4,
                 "num_per_class": size("sweep_clips", gpu), "frames": size("sweep_frames", gpu), "persons": 2,
                 "split": {"train": "train", "val": "val", "test": "test"}},
        "model": {"name": "hpigcn_rp", "kwargs": {"width": size("sweep_width", gpu)}},
        # Dry run: device cpu, so the sweep's one latency measurement runs on the CPU (it would
        # ask the logical GPU for CUDA); Ray still gives each trial a quarter of that GPU.
        "train": {"epochs": 2, "batch_size": 16 if gpu else 8, "optimizer": "adamw", "lr": 0.002,
                  "latency_batches": [1], "device": "auto" if gpu else "cpu"},
        "search": {"train.seed": {"grid": [0, 1, 2, 3]}},
        "resources": {"cpu": size("sweep_cpu", gpu), "gpu": 0.25},
        "storage": str(workdir),
        "wandb": {"mode": "disabled"},
    }
    # A logical GPU on a machine without one: Ray then places the 4 trials on it as on a real one.
    start_ray(num_cpus=None if gpu else 2, num_gpus=None if gpu else 1, object_store_memory=300 * 2**20)
    try:
        with _GpuProcesses() as procs:
            outcome = run_sweep(load_sweep(spec), console=Console(quiet=True))
    finally:
        ray.shutdown()
    sweep = Path(outcome.sweep_dir)
    n, together = _all_at_once(sweep)
    seen = f"; nvidia-smi saw {procs.most} processes on the GPU at once" if gpu else ""
    rows.append(("sweep", f"{n} trials, gpu: 0.25 each", f"all {n} running at once for {together:.0f} s{seen}",
                 "" if gpu else "logical GPU (dry run)"))
    return sweep


def step_serve(gpu: bool, device: torch.device, bundle: Path | None, sweep: Path | None, workdir: Path,
               rows: list) -> None:
    from skelray.data.layouts import get_layout
    from skelray.export import export_bundle, load_bundle, read_manifest
    from skelray.export.manifest import SERVE_DTYPES

    if bundle is None:
        if sweep is None:
            rows.append(("serve", "skipped", "needs --bundle or the sweep step", ""))
            return
        bundle = workdir / "bundle"
        export_bundle(sweep, bundle, trial="t00000", check_data=False)
    manifest = read_manifest(bundle)
    v = get_layout(manifest.layout).num_joints if manifest.layout else manifest.num_joints
    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal((manifest.persons, int(t), v, manifest.in_channels)) * 0.3 + 2.0)
             .astype(np.float32) for t in rng.integers(20, 90, size=16)]
    reference = load_bundle(bundle).logits(clips)
    scale = max(1.0, float(np.abs(reference).max()))
    results = []
    for dtype in ("float32", "bfloat16"):
        got = load_bundle(bundle, device=str(device), dtype=dtype).logits(clips)
        diff = float(np.abs(got - reference).max())
        same_top1 = bool((got.argmax(1) == reference.argmax(1)).all())
        if not diff <= SERVE_DTYPES[dtype] * scale:
            raise SystemExit(f"serve: {dtype} on {device} differs from the CPU by {diff:.3g}")
        results.append(f"{dtype}: max diff {diff:.1e}, top-1 {'same' if same_top1 else 'differs'}")
    rows.append(("serve", f"bundle on {device} vs CPU fp32, {len(clips)} clips", "; ".join(results),
                 f"tolerance x max(1,|logit| {scale:.3g})"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, even on a GPU node")
    parser.add_argument("--skip", default="", help=f"comma-separated steps to leave out: {', '.join(STEPS)}")
    parser.add_argument("--bundle", type=Path, help="serve this bundle instead of one exported from the sweep")
    args = parser.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(STEPS):
        parser.error(f"--skip: unknown step(s) {', '.join(sorted(skip - set(STEPS)))}; choose from {', '.join(STEPS)}")
    gpu = torch.cuda.is_available() and not args.dry_run
    if not torch.cuda.is_available():
        console.print("[yellow]No CUDA GPU here: running the dry run (the same steps at tiny size on the CPU).[/]")
    device = torch.device("cuda" if gpu else "cpu")
    if gpu:
        console.print(f"GPU: {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}")
    else:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    rows: list[tuple[str, str, str, str]] = []
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="skelray-gpu-check-"))
    try:
        if "tests" not in skip:
            step_tests(gpu, rows)
        if "train" not in skip:
            step_train(gpu, device, rows)
        if "infer" not in skip:
            step_infer(gpu, device, rows)
        sweep = step_sweep(gpu, workdir, rows) if "sweep" not in skip else None
        if "serve" not in skip:
            step_serve(gpu, device, args.bundle, sweep, workdir, rows)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    table = Table(title=f"gpu_check on {torch.cuda.get_device_name(0) if gpu else 'the CPU (dry run)'}, "
                        f"{time.perf_counter() - started:.0f} s")
    for column in ("step", "what", "result", "note"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
