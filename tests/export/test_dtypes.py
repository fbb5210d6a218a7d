"""The export check at each serving dtype, and loading members at a dtype the check covered."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from skelray.export import BundleError, load_bundle, read_manifest
from skelray.export.bundle import load_member
from skelray.export.manifest import SERVE_DTYPES
from skelray.export.writer import _check_dtypes, _compare


def test_every_member_is_checked_in_bfloat16_within_its_tolerance(bundle):
    for m in read_manifest(bundle).members:
        assert set(m.check.dtypes) == {"bfloat16"}
        worst = m.check.dtypes["bfloat16"]
        # Above float32's rounding (the cast did happen), within bfloat16's stated tolerance.
        assert m.check.max_abs_diff < worst <= SERVE_DTYPES["bfloat16"] * max(1.0, m.check.logit_scale)


def test_a_bfloat16_bundle_answers_like_the_float32_one(bundle):
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal((1, int(t), 20, 3)).astype(np.float32) + np.float32(2.0) for t in (9, 15, 30)]
    full, half = load_bundle(bundle), load_bundle(bundle, dtype="bfloat16")
    assert all(next(mod.parameters()).dtype == torch.bfloat16 for mod in half.models.values())
    a, b = full.logits(clips), half.logits(clips)
    assert b.dtype == a.dtype and a.shape == b.shape
    assert 0 < np.abs(a - b).max() <= SERVE_DTYPES["bfloat16"] * max(1.0, np.abs(a).max())


def test_members_load_only_at_a_dtype_the_export_checked(bundle):
    member = read_manifest(bundle).members[0]
    unchecked = member.model_copy(update={"check": member.check.model_copy(update={"dtypes": {}})})
    with pytest.raises(BundleError, match="not checked at bfloat16") as err:
        load_member(bundle, unchecked, dtype="bfloat16")
    assert "re-export" in str(err.value)
    assert next(load_member(bundle, unchecked).parameters()).dtype == torch.float32
    with pytest.raises(BundleError, match="unknown serving dtype 'float16'"):
        load_member(bundle, member, dtype="float16")


def test_the_dtype_check_fails_a_member_beyond_its_tolerance(bundle):
    """A fused form off by a few percent passes float32's check nowhere, and bfloat16's neither."""
    b = load_bundle(bundle)
    name, served = next(iter(b.models.items()))
    x = {"random": np.random.default_rng(1).standard_normal((4, 1, 8, 20, 3)).astype(np.float32)}
    assert _check_dtypes(name, served, served, x, ("float32", "bfloat16"), "here")["bfloat16"] > 0
    wrong = copy.deepcopy(served)
    with torch.no_grad():
        for p in wrong.parameters():
            p.mul_(1.2)  # a bad fold: every weight 20% off
    diffs, scale, _ = _compare(served, wrong, x)
    assert max(diffs.values()) > SERVE_DTYPES["bfloat16"] * max(1.0, scale)
    with pytest.raises(BundleError, match="in bfloat16 the fused form differs") as err:
        _check_dtypes(name, served, wrong, x, ("bfloat16",), "here")
    assert "--dtypes float32" in str(err.value)
