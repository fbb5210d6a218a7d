"""CPU inference throughput of the model zoo, measured side by side in one run.

    .venv/bin/python benchmarks/bench_models.py            # batch 16 and 64, M=2, T=64, ntu25
    .venv/bin/python benchmarks/bench_models.py --quick    # a smoke run in a few seconds

Compares the fused (deployed) HPI-GCN-RP with its training form (target >= 2.0x) and with the
ST-GCN reference (target >= 1.5x), and shows ESGN beside them. All models run on the same
input with the same thread count; timings interleave the models (one forward of each in
turn, repeated, starting from a different model each round) so drifting load on a shared
machine hits them alike, and each figure is the median of the repeats. ST-GCN runs as trained
(eval mode), the reference form every paper compares with. The full run takes about 9 minutes
on one thread, most of it the training form at N=64.
"""

from __future__ import annotations

import argparse

import torch
from _timing import add_model_args, time_interleaved  # benchmarks/ is on sys.path when run as a script
from rich.console import Console
from rich.table import Table

from skelray.models import create_model, fuse, profile


def build(num_classes: int, layout: str) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    rp = create_model("hpigcn_rp", num_classes=num_classes, layout=layout).eval()
    return {
        "hpigcn_rp (fused)": fuse(rp),
        "hpigcn_rp (training form)": rp,
        "stgcn": create_model("stgcn", num_classes=num_classes, layout=layout).eval(),
        "esgn (fused)": fuse(create_model("esgn", num_classes=num_classes, layout=layout)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64], help="batch sizes N")
    add_model_args(parser)
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards per model and batch")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 4, T=16, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.frames, args.repeats, args.warmup = [4], 16, 2, 1
    torch.set_num_threads(args.threads)
    console = Console()

    models = build(args.num_classes, args.layout)
    v = next(iter(models.values())).num_joints
    clip = (1, args.persons, args.frames, v, 3)
    sizes = {n: profile(m, clip) for n, m in models.items()}

    table = Table(title=f"CPU inference, {args.threads} thread(s), M={args.persons}, T={args.frames}, "
                        f"{args.layout}, {args.num_classes} classes (median of {args.repeats})")
    table.add_column("model", style="bold")
    table.add_column("params", justify="right")
    table.add_column("GMACs/clip", justify="right")
    throughput: dict[int, dict[str, float]] = {}
    for n_batch in args.batches:
        table.add_column(f"samples/s @ N={n_batch}", justify="right")
        x = torch.randn(n_batch, args.persons, args.frames, v, 3)
        seconds = time_interleaved(models, x, args.repeats, args.warmup)
        throughput[n_batch] = {n: n_batch / s for n, s in seconds.items()}
    for n in models:
        params, macs = sizes[n]
        rates = (f"{throughput[b][n]:.1f}" for b in args.batches)
        table.add_row(n, f"{params:,}", f"{macs / 1e9:.3f}", *rates)
    console.print(table)

    ratios = Table(title="speed-ups (throughput ratios, same run)")
    ratios.add_column("comparison", style="bold")
    ratios.add_column("target", justify="right")
    for b in args.batches:
        ratios.add_column(f"N={b}", justify="right")
    comparisons = [
        ("hpigcn_rp fused / training form", "hpigcn_rp (fused)", "hpigcn_rp (training form)", 2.0),
        ("hpigcn_rp fused / stgcn", "hpigcn_rp (fused)", "stgcn", 1.5),
        ("esgn fused / stgcn", "esgn (fused)", "stgcn", None),
    ]
    for label, a, b_name, target in comparisons:
        cells = []
        for b in args.batches:
            r = throughput[b][a] / throughput[b][b_name]
            ok = target is None or r >= target
            cells.append(f"[{'green' if ok else 'red'}]{r:.2f}x[/]")
        ratios.add_row(label, f">= {target:.1f}x" if target else "-", *cells)
    console.print(ratios)


if __name__ == "__main__":
    main()
