"""What ``data convert`` and ``data info`` say about a dataset beyond its shape: empty clips and
frames, and whether the joints are in the layout's order.

**Empty frames.** Sensors write all-zero joints when they lose the body: a frame is *empty*
when every coordinate of every person in it is zero, a clip is *empty* when all its frames
are. An empty clip teaches nothing (its label is noise): ``convert`` reports it, and leaves it
out with ``--on-error skip``; clips with many empty frames are reported and kept.

**Joint order, from bone lengths.** Bones are rigid: in data whose joints are in the layout's
order, each of the layout's edges joins two joints a fixed distance apart, and a left bone is
as long as its right partner. When the file lists the joints in another order, many "bones"
join unrelated joints (a hand and a foot), whose distance changes as the body moves and
differs between the two sides. Two statistics, per clip, on the person present in most
frames, over the frames where both joints of a bone are present (not all-zero):

- *variation* of bone ``e``: the robust spread of its length over time (1.4826 x median
  absolute deviation from its median), divided by the clip's body scale;
- *asymmetry* of a left/right pair (``layout.mirror()``): the difference of the two bones'
  median lengths, divided by the body scale.

The body scale is the median over frames of the mean bone length, so both numbers are in
units of "an average bone" and do not depend on the subject's size or the data's unit. Each
statistic is then the median over clips (one bad clip does not sway it), and the check warns
when the worst bone exceeds its limit, naming the worst bones. A permutation that only swaps
left and right joints keeps every length, so it cannot be seen this way.

Only 3D data is checked: a 2D projection shortens a bone as it turns away from the camera
(and a left limb differently from the right one), so lengths in pixels say little.

The limits come from measuring both statistics with ``benchmarks/bench_joint_order.py``
(worst bone, median over clips; 100 synthetic 3D clips per layout, five random permutations
each):

==============================================  ==============  ==============
data                                            variation       asymmetry
==============================================  ==============  ==============
synthetic, the five built-in layouts            0.074 - 0.084   0.000 - 0.015
the same, joints permuted                       0.25 - 0.62     0.64 - 1.63
NW-UCLA as read (1482 clips measured)           0.158           0.117
NW-UCLA, joints permuted                        0.18 - 0.24     1.07 - 1.63
==============================================  ==============  ==============

Kinect v1 bone lengths are far from rigid (the legs', above all), so on NW-UCLA a permuted
order varies barely more than the true one and stays under the variation limit; the
asymmetry tells the two apart by a factor of nine. The variation is what catches a permuted
layout without left/right pairs (``hand21``: asymmetry 0) and permutations of clean 3D data.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from skelray.data._types import SkeletonSequence
from skelray.data.layouts import Layout, get_layout
from skelray.data.transforms import present_mask
from skelray.errors import LayoutError

# A clip with at least this share of empty frames is reported (and kept).
MOSTLY_EMPTY = 0.5
# Warning limits, in units of the clip's mean bone length (measured: see the module docstring).
VARIATION_LIMIT = 0.25
ASYMMETRY_LIMIT = 0.4
MAX_CLIPS = 500  # clips the bone check measures (evenly spaced): enough for a stable median
_MIN_FRAMES = 3  # frames a clip needs before its spread means anything
_SHOWN = 3  # worst bones named in a warning


def empty_frame_mask(keypoints: np.ndarray) -> np.ndarray:
    """``(T,)`` bool: frames of an ``(M, T, V, C)`` clip in which every coordinate is zero."""
    return ~np.any(keypoints != 0, axis=(0, 2, 3))


@dataclass
class EmptyCount:
    """Empty frames and clips of a dataset (see the module docstring)."""

    clips: int = 0
    frames: int = 0
    empty_frames: int = 0
    with_empty: int = 0  # clips with at least one empty frame
    empty_clips: list[str] = field(default_factory=list)  # ids of clips with no non-empty frame
    mostly_empty: list[tuple[str, int, int]] = field(default_factory=list)  # (id, empty, frames), not all

    def add(self, seq: SkeletonSequence) -> None:
        t = seq.total_frames
        empty = int(empty_frame_mask(seq.keypoints).sum())
        self.clips += 1
        self.frames += t
        self.empty_frames += empty
        self.with_empty += empty > 0
        if empty == t:
            self.empty_clips.append(seq.id)
        elif empty >= MOSTLY_EMPTY * t:
            self.mostly_empty.append((seq.id, empty, t))

    def summary(self) -> str:
        """One line: how many clips and frames are empty."""
        share = 100 * self.empty_frames / self.frames if self.frames else 0.0
        return (f"{len(self.empty_clips)} empty clip(s), {len(self.mostly_empty)} with at least "
                f"{100 * MOSTLY_EMPTY:.0f}% empty frames, {self.with_empty} with any; "
                f"{self.empty_frames} of {self.frames} frames empty ({share:.1f}%)")


def count_empty(sequences: Iterable[SkeletonSequence]) -> EmptyCount:
    count = EmptyCount()
    for seq in sequences:
        count.add(seq)
    return count


def _bone_name(layout: Layout, edge: tuple[int, int]) -> str:
    child, parent = edge
    return f"{layout.joints[parent]}-{layout.joints[child]}"


def _mirror_pairs(layout: Layout) -> list[tuple[int, int]]:
    """Edge index pairs ``(i, j)``, ``i < j``, of bones that mirror each other (a left bone and
    its right partner); none when the layout has no left/right joints."""
    try:
        perm = layout.mirror()
    except LayoutError:
        return []
    index = {tuple(e): i for i, e in enumerate(layout.edges)}
    pairs = set()
    for i, (a, b) in enumerate(layout.edges):
        j = index[(perm[a], perm[b])]
        if j != i:
            pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


def _clip_stats(kp: np.ndarray, edges: np.ndarray,
                pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray] | None:
    """(variation per edge, asymmetry per pair) of one clip, or None when it has too few frames."""
    present = present_mask(kp)  # (M, T): what the model's preprocessing counts as present
    most = int(np.argmax(present.sum(axis=1)))  # the person present in most frames
    frames = kp[most][present[most]]
    if len(frames) < _MIN_FRAMES:
        return None
    joint_there = np.any(frames != 0, axis=2)  # (T, V): a joint at exactly 0 is missing
    length = np.linalg.norm(frames[:, edges[:, 0]] - frames[:, edges[:, 1]], axis=2)  # (T, E)
    length[~(joint_there[:, edges[:, 0]] & joint_there[:, edges[:, 1]])] = np.nan
    with np.errstate(all="ignore"), _quiet():
        scale = np.nanmedian(np.nanmean(length, axis=1))
        if not np.isfinite(scale) or scale <= 0:
            return None
        median = np.nanmedian(length, axis=0)
        spread = 1.4826 * np.nanmedian(np.abs(length - median), axis=0)
        asym = np.array([abs(median[i] - median[j]) for i, j in pairs])
    return spread / scale, asym / scale


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: a bone never seen
        yield


@dataclass
class BoneCheck:
    """Median bone-length statistics over the clips measured, worst first (module docstring)."""

    layout: str
    clips: int  # clips measured
    variation: list[tuple[str, float]] = field(default_factory=list)  # bone -> median over clips
    asymmetry: list[tuple[str, float]] = field(default_factory=list)  # "left / right" -> median; [] without pairs
    skipped: str | None = None  # why nothing was measured (2D data, no edges, no usable clip)

    @property
    def worst_variation(self) -> float:
        return self.variation[0][1] if self.variation else 0.0

    @property
    def worst_asymmetry(self) -> float:
        return self.asymmetry[0][1] if self.asymmetry else 0.0

    def warnings(self) -> list[str]:
        """Why the joints look out of the layout's order, in words; [] when they look fine."""
        def worst(items: list[tuple[str, float]], limit: float) -> str:
            return ", ".join(f"{name} {value:.2f}" for name, value in items[:_SHOWN] if value > limit)

        out = []
        if self.worst_asymmetry > ASYMMETRY_LIMIT:
            out.append(f"left and right bones differ in length by up to {self.worst_asymmetry:.2f} x the mean "
                       f"bone length (limit {ASYMMETRY_LIMIT}; worst: {worst(self.asymmetry, ASYMMETRY_LIMIT)})")
        if self.worst_variation > VARIATION_LIMIT:
            out.append(f"bone lengths vary over time by up to {self.worst_variation:.2f} x the mean bone length "
                       f"(limit {VARIATION_LIMIT}; worst: {worst(self.variation, VARIATION_LIMIT)})")
        return out

    def summary(self) -> str:
        """One line: what was measured, or why nothing was."""
        if self.skipped:
            return f"not checked: {self.skipped}"
        pairs = f", worst left/right asymmetry {self.worst_asymmetry:.3f} (limit {ASYMMETRY_LIMIT})" \
            if self.asymmetry else ", no left/right pairs"
        return (f"{self.clips} clips: worst bone-length variation {self.worst_variation:.3f} "
                f"(limit {VARIATION_LIMIT}){pairs}, in mean bone lengths")

    def advice(self) -> str:
        return (f"the joints may not be in the order of layout '{self.layout}': check the order your files "
                "list them in, and convert again with --reorder (see `skelray data convert --help`)")


def check_bones(sequences: Sequence[SkeletonSequence], layout: str | Layout, *,
                max_clips: int = MAX_CLIPS) -> BoneCheck:
    """Bone-length variation and left/right asymmetry of up to ``max_clips`` clips (evenly
    spaced through ``sequences``), against ``layout``'s edges; 3D data only."""
    layout = get_layout(layout)
    if not layout.edges:
        return BoneCheck(layout.name, 0, skipped="the layout has no edges")
    n = len(sequences)
    picks = np.unique(np.linspace(0, n - 1, min(n, max_clips)).round().astype(int)) if n else []
    edges = np.array(layout.edges, dtype=np.int64)
    pairs = _mirror_pairs(layout)
    var, asym = [], []
    for i in picks:
        kp = np.asarray(sequences[int(i)].keypoints)
        if kp.shape[3] < 3:
            return BoneCheck(layout.name, 0, skipped="2D data (a projection does not keep bone lengths)")
        got = _clip_stats(kp[..., :3], edges, pairs)
        if got is not None:
            var.append(got[0])
            asym.append(got[1])
    if not var:
        return BoneCheck(layout.name, 0, skipped=f"no clip has {_MIN_FRAMES} or more non-empty frames")
    with _quiet():
        v = np.nanmedian(np.stack(var), axis=0)
        a = np.nanmedian(np.stack(asym), axis=0) if pairs else np.zeros(0)
    variation = [(_bone_name(layout, layout.edges[e]), float(x)) for e, x in enumerate(v) if np.isfinite(x)]
    asymmetry = [(f"{_bone_name(layout, layout.edges[i])} / {_bone_name(layout, layout.edges[j])}", float(x))
                 for (i, j), x in zip(pairs, a) if np.isfinite(x)]
    return BoneCheck(layout.name, len(var), sorted(variation, key=lambda item: -item[1]),
                     sorted(asymmetry, key=lambda item: -item[1]))
