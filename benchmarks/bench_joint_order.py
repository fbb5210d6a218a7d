"""The joint-order check's statistics (``skelray.data.quality``) on data in the layout's order and
with the joints permuted at random: where its warning limits come from.

    python benchmarks/bench_joint_order.py [--ucla PATH] [--seeds 5]

Prints, per dataset, the worst bone's variation and the worst left/right asymmetry (median over
clips, in mean bone lengths) and whether the check warns. NW-UCLA is read from ``--ucla``,
``$SKELRAY_UCLA`` or ``../shared/data/nw_ucla``, and left out when absent.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from skelray.data import SkeletonSequence, get_layout, read_ucla, synthetic
from skelray.data.quality import check_bones

LAYOUTS = ("kinect_v1_20", "ntu25", "coco17", "openpose18", "hand21")


def permuted(seqs: list[SkeletonSequence], order: np.ndarray) -> list[SkeletonSequence]:
    return [SkeletonSequence(s.id, s.label, s.keypoints[:, :, order], s.tags) for s in seqs]


def row(name: str, seqs: list[SkeletonSequence], layout: str, max_clips: int) -> None:
    check = check_bones(seqs, layout, max_clips=max_clips)
    print(f"{name:44s} {check.clips:6d} {check.worst_variation:10.3f} {check.worst_asymmetry:10.3f}  "
          f"{'warns' if check.warnings() else '-'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("SKELRAY_UCLA", str(Path(__file__).resolve().parents[2] / "shared/data/nw_ucla"))
    parser.add_argument("--ucla", default=default)
    parser.add_argument("--seeds", type=int, default=5, help="random permutations per dataset")
    args = parser.parse_args()
    print(f"{'data':44s} {'clips':>6s} {'variation':>10s} {'asymmetry':>10s}  warning")
    for layout in LAYOUTS:
        seqs = synthetic(10, 10, layout, 64, seed=0).sequences  # 3D, one person
        row(f"synthetic {layout}", seqs, layout, 500)
        for seed in range(args.seeds):
            order = np.random.default_rng(seed).permutation(get_layout(layout).num_joints)
            row(f"synthetic {layout}, permuted (seed {seed})", permuted(seqs, order), layout, 500)
    if Path(args.ucla).is_dir():
        seqs = read_ucla(args.ucla).sequences
        row("NW-UCLA, all clips", seqs, "kinect_v1_20", len(seqs))
        for seed in range(args.seeds):
            order = np.random.default_rng(seed).permutation(20)
            row(f"NW-UCLA, permuted (seed {seed})", permuted(seqs, order), "kinect_v1_20", len(seqs))


if __name__ == "__main__":
    main()
