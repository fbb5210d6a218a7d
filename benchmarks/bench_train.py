"""CPU training-step time of HPI-GCN-RP's training form, measured side by side in one run.

    .venv/bin/python benchmarks/bench_train.py            # NW-UCLA's recipe: batch 32, T=32, width 0.5
    .venv/bin/python benchmarks/bench_train.py --quick    # a smoke run in a few seconds

The training form computes two things in a cheaper way than the direct PyTorch ops: the
Rep-TCN's 3x1 average pool as a sum of strided slices (``TemporalMean``, not ``AvgPool2d``),
and the graph conv's product with the sum of its PA matrices (not one product per matrix,
then summed). Both give the same outputs and gradients (tests/models/test_models_fuse.py).
This benchmark times one training step (forward, cross-entropy, backward, AdamW step) of the
model as built against a copy that uses the direct ops, for PA 1/3/5, and prints the ratio.
The models take turns step by step, so drifting load on a shared machine hits them alike;
each figure is the median of the repeats.
"""

from __future__ import annotations

import argparse
import copy
import types

import torch
from _timing import add_model_args, time_interleaved  # benchmarks/ is on sys.path when run as a script
from rich.console import Console
from rich.table import Table
from torch import nn

from skelray.models import create_model
from skelray.models._rep import PAGraphConv, TemporalMean


def _product_per_matrix(self: PAGraphConv, x: torch.Tensor) -> torch.Tensor:
    """PAGraphConv.forward written as the paper's formula: one product per matrix, summed."""
    h = self.conv_in(x)
    n, c, t, v = h.shape
    h = h.view(n, self.groups, c // self.groups, t, v)
    y = sum(self.aggregate(h, self.pa[i]) for i in range(self.pa.shape[0]))
    return self.conv_out(y.reshape(n, c, t, v))


def direct_ops(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with PyTorch's average pool and one graph product per PA matrix."""
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(getattr(m, "second", None), TemporalMean):
            m.second = nn.AvgPool2d((m.second.kernel, 1), (m.second.stride, 1))
        if isinstance(m, PAGraphConv):
            m.forward = types.MethodType(_product_per_matrix, m)
    return ref


class Trainer:
    """A model with its optimiser and a fixed batch of labels: one call is one training step."""

    def __init__(self, model: nn.Module, labels: torch.Tensor) -> None:
        self.model, self.labels = model.train(), labels
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(self, x: torch.Tensor) -> None:
        loss = nn.functional.cross_entropy(self.model(x), self.labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=float, default=0.5, help="channel width multiplier")
    parser.add_argument("--pa-counts", type=int, nargs="+", default=[1, 3, 5])
    add_model_args(parser)
    parser.add_argument("--repeats", type=int, default=15, help="timed steps per model")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 4, T=16, 2 repeats")
    parser.set_defaults(persons=1, frames=32, layout="kinect_v1_20", num_classes=10, warmup=2)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.frames, args.repeats, args.warmup = 4, 16, 2, 1
    torch.set_num_threads(args.threads)
    console = Console()
    table = Table(title=f"Training step (forward, backward, AdamW), CPU, {args.threads} thread(s), "
                        f"batch {args.batch}, M={args.persons}, T={args.frames}, {args.layout}, "
                        f"width {args.width} (median of {args.repeats})")
    for column in ("PA count", "as built (ms)", "direct ops (ms)", "speed-up", "max |logit diff|"):
        table.add_column(column, justify="right")
    for pa in args.pa_counts:
        torch.manual_seed(0)
        model = create_model("hpigcn_rp", num_classes=args.num_classes, layout=args.layout,
                             num_persons=args.persons, pa_count=pa, width=args.width)
        ref = direct_ops(model)
        x = torch.randn(args.batch, args.persons, args.frames, model.num_joints, 3)
        with torch.no_grad():
            diff = (model.eval()(x) - ref.eval()(x)).abs().max().item()
        labels = torch.arange(args.batch) % args.num_classes
        trainers = {"built": Trainer(model, labels), "direct": Trainer(ref, labels)}
        seconds = time_interleaved(trainers, x, args.repeats, args.warmup, step=Trainer.step)
        table.add_row(str(pa), f"{seconds['built'] * 1e3:.0f}", f"{seconds['direct'] * 1e3:.0f}",
                      f"{seconds['direct'] / seconds['built']:.2f}x", f"{diff:.1e}")
    console.print(table)


if __name__ == "__main__":
    main()
