"""The GPU path: training step, input on the device and bundles, on a CUDA GPU (skipped
without one; benchmarks/gpu_check.py runs them). Each compares with the CPU."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from skelray.data.synthetic import synthetic
from skelray.data.transforms import Preprocess
from skelray.export import load_bundle
from skelray.export.manifest import SERVE_DTYPES
from skelray.models import create_model
from skelray.train.accel import resolve_precision
from skelray.train.loop import Split, make_optimizer, make_schedule, train_epoch

pytestmark = pytest.mark.gpu


def _split_and_model():
    ds = synthetic(num_classes=4, num_per_class=8, frames=20, seed=0, persons=2)
    split = Split([s.keypoints for s in ds.sequences], np.array([s.label for s in ds.sequences]))
    pp = Preprocess(ds.layout, frames=16, persons=2, rotate_degrees=10, mirror=True)
    torch.manual_seed(0)
    return split, pp, create_model("hpigcn_rp", num_classes=4, layout=ds.layout, width=0.25)


def _epoch(model, split, pp, device, precision, prefetch):
    opt = make_optimizer(model, "sgd", 0.02)
    sched = make_schedule(opt, kind="cosine", epochs=1, steps_per_epoch=4)
    return train_epoch(model.to(device), split, pp, opt, sched, batch_size=8, rng=np.random.default_rng(0),
                       device=device, precision=precision, prefetch_batches=prefetch)


def test_auto_precision_picks_bf16_or_fp16_on_the_gpu() -> None:
    mode = resolve_precision("auto", "cuda")
    assert mode.autocast == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert mode.scaled == (mode.autocast == torch.float16)


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_a_gpu_epoch_matches_the_cpu(precision: str) -> None:
    split, pp, model = _split_and_model()
    cpu = _epoch(copy.deepcopy(model), split, pp, "cpu", "fp32", 0)
    gpu = _epoch(model, split, pp, "cuda", precision, 2)
    tol = 1e-2 if precision == "fp32" else 5e-2  # TF32 convolutions (cuDNN default); bf16/fp16 autocast
    assert abs(gpu["loss"] - cpu["loss"]) <= tol * cpu["loss"]


def test_a_bundle_on_the_gpu_answers_like_the_cpu(bundle) -> None:
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal((1, int(t), 20, 3)).astype(np.float32) + np.float32(2.0) for t in (9, 20, 41)]
    ref = load_bundle(bundle).logits(clips)
    for dtype in ("float32", "bfloat16"):
        got = load_bundle(bundle, device="cuda", dtype=dtype).logits(clips)
        assert np.abs(got - ref).max() <= SERVE_DTYPES[dtype] * max(1.0, np.abs(ref).max())
