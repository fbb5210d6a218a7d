"""The member replica's health check: a stuck batch or a broken model fails it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skelray.models import create_model, fuse
from skelray.serve.deployments import Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _probe(model: torch.nn.Module):
    clip = np.zeros((1, 2, 16, 25, 3), dtype=np.float32)

    def run() -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(clip)).numpy()

    return run


def test_a_healthy_idle_member_passes_with_a_real_forward() -> None:
    model = fuse(create_model("hpigcn_rp", num_classes=7, layout="ntu25", width=0.25)).eval()
    calls = []
    probe = _probe(model)
    dog = Watchdog("m0", lambda: calls.append(1) or probe(), 7)
    dog.check()
    assert calls == [1]


def test_a_batch_running_past_the_limit_fails_the_check() -> None:
    clock = Clock()
    dog = Watchdog("m0", lambda: np.zeros((1, 7)), 7, stall_s=60, clock=clock)
    batch = dog.started()
    clock.now += 59
    dog.check()  # busy, still within the limit: no probe, no error
    clock.now += 2
    with pytest.raises(RuntimeError, match=r"m0: a batch has been running for 61 s \(limit 60 s\)"):
        dog.check()
    dog.finished(batch)
    dog.check()  # the batch ended: healthy again


@pytest.mark.parametrize(("out", "says"), [
    (np.full((1, 7), np.nan), "non-finite logits"),
    (np.zeros((1, 5)), r"\(1, 5\)"),
])
def test_a_model_that_gives_bad_logits_fails_the_check(out: np.ndarray, says: str) -> None:
    dog = Watchdog("m1", lambda: out, 7)
    with pytest.raises(RuntimeError, match=f"m1: a one-clip forward gave {says}"):
        dog.check()


def test_a_model_that_raises_fails_the_check() -> None:
    def broken() -> np.ndarray:
        raise RuntimeError("CUDA error: an illegal memory access")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        Watchdog("m2", broken, 7).check()


def test_the_fused_replicas_check_names_the_member_that_broke(bundle) -> None:
    from skelray.data import synthetic
    from skelray.export import load_bundle
    from skelray.serve.replica import FusedEnsemble

    fused = FusedEnsemble(str(bundle))
    names = [m.name for m in fused.manifest.members]
    assert fused.check() == {n: "ok" for n in names}
    clips = [s.keypoints for s in synthetic(4, 2, "kinect_v1_20", 12, seed=4).sequences]
    # The batched path computes what the offline ensemble computes.
    np.testing.assert_allclose(fused.logits(clips), load_bundle(bundle).logits(clips), rtol=1e-5, atol=1e-6)

    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], fused.manifest.num_classes), float("nan"))

    fused.models[names[1]] = Broken()
    with pytest.raises(RuntimeError, match=f"member {names[1]}: a one-clip forward gave non-finite logits"):
        fused.check()


def test_a_replica_serves_at_the_dtype_asked_and_answers_like_the_offline_bundle_at_it(bundle) -> None:
    from skelray.data import synthetic
    from skelray.export import load_bundle
    from skelray.serve.replica import FusedEnsemble

    fused = FusedEnsemble(str(bundle), dtype="bfloat16")
    assert all(next(m.parameters()).dtype == torch.bfloat16 for m in fused.models.values())
    assert fused.check() == {m.name: "ok" for m in fused.manifest.members}  # the probe runs at bf16 too
    clips = [s.keypoints for s in synthetic(4, 2, "kinect_v1_20", 12, seed=5).sequences]
    got = fused.logits(clips)
    assert got.shape == (len(clips), fused.manifest.num_classes) and np.isfinite(got).all()
    np.testing.assert_allclose(got, load_bundle(bundle, dtype="bfloat16").logits(clips), rtol=1e-5, atol=1e-6)


def test_the_app_refuses_a_dtype_the_export_did_not_check_before_any_replica_starts(bundle, tmp_path) -> None:
    import json
    import shutil

    from skelray.export.manifest import BundleError
    from skelray.serve.builder import app

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    doc = json.loads((copy / "manifest.json").read_text())
    for m in doc["members"]:
        m["check"]["dtypes"] = {}
    (copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="not checked at bfloat16"):
        app({"bundle": str(copy), "dtype": "bfloat16"})
    app({"bundle": str(copy)})  # float32 needs no extra check
    from skelray.errors import ConfigError

    with pytest.raises(ConfigError, match="dtype"):
        app({"bundle": str(copy), "dtype": "float16"})
