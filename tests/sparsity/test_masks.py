"""``sparsify``: achieved sparsity, global vs per-block thresholds, granularities, what gets
masked, and the errors a user can cause."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from skelray.errors import ConfigError
from skelray.sparsity import report, sparsify
from skelray.sparsity._masks import ScoreMask, block_key

LEVELS = (0.6, 0.8, 0.95, 0.99)


def masked_convs(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules()
            if parametrize.is_parametrized(m, "weight")
            and any(isinstance(p, ScoreMask) for p in m.parametrizations["weight"])}


def zero_fraction_by_block(model: nn.Module) -> tuple[float, dict[str, float]]:
    """Sparsity counted from the weights the forward pass uses (not from the masks' own
    bookkeeping): overall and per block."""
    zeros: dict[str, int] = defaultdict(int)
    sizes: dict[str, int] = defaultdict(int)
    with torch.no_grad():
        for name, module in masked_convs(model).items():
            w = module.weight
            zeros[block_key(model, name)] += int((w == 0).sum())
            sizes[block_key(model, name)] += w.numel()
    overall = sum(zeros.values()) / sum(sizes.values())
    return overall, {k: zeros[k] / sizes[k] for k in sizes}


@pytest.mark.parametrize("scope", ["global", "block"])
@pytest.mark.parametrize("name", ["stgcn", "hpigcn_rp"])
def test_achieved_sparsity_is_the_level_within_half_a_point(fresh, name: str, scope: str) -> None:
    model = sparsify(fresh(name), LEVELS[0], scope=scope)
    for level in LEVELS:
        model.sparse_state.set_level(level)  # as the schedule moves it; thresholds follow
        overall, per_block = zero_fraction_by_block(model)
        assert abs(overall - level) <= 0.005, (level, overall)
        assert abs(report(model, macs=False)["overall"] - level) <= 0.005
        if scope == "block":  # every block on its own, not just on average
            worst = max(abs(s - level) for s in per_block.values())
            assert worst <= 0.005, (level, per_block)
    fresh_at_top = sparsify(fresh(name), LEVELS[-1], scope=scope)  # and straight from sparsify
    assert abs(zero_fraction_by_block(fresh_at_top)[0] - LEVELS[-1]) <= 0.005


def test_global_threshold_spans_blocks_and_block_scope_does_not(fresh) -> None:
    # Raise one block's scores: one global threshold then prunes that block less and the
    # others more; per-block thresholds still prune every block at the level.
    results = {}
    for scope in ("global", "block"):
        model = sparsify(fresh("hpigcn_rp"), 0.8, scope=scope)
        with torch.no_grad():
            for name, module in masked_convs(model).items():
                if name.startswith("blocks.0."):
                    module.parametrizations["weight"][0].score.mul_(10.0)
        results[scope] = zero_fraction_by_block(model)
    overall, blocks = results["global"]
    assert abs(overall - 0.8) <= 0.005
    assert blocks["blocks.0"] < 0.1 and all(s > 0.8 for k, s in blocks.items() if k != "blocks.0")
    _, blocks = results["block"]
    assert all(abs(s - 0.8) <= 0.005 for s in blocks.values())


@pytest.mark.parametrize("granularity", ["kernel", "channel"])
@pytest.mark.parametrize("name", ["stgcn", "hpigcn_rp"])
def test_structured_granularities_reach_the_level_in_whole_units(fresh, name: str, granularity: str) -> None:
    model = sparsify(fresh(name), 0.9, granularity=granularity)
    overall, _ = zero_fraction_by_block(model)
    assert abs(overall - 0.9) <= 0.005
    with torch.no_grad():
        for module in masked_convs(model).values():
            w = module.weight
            if granularity == "kernel":  # a kernel is all zero or has no forced zeros
                dead = (w == 0).flatten(2).all(dim=2)
                assert ((w == 0).flatten(2).any(dim=2) == dead).all()
            else:  # a pruned channel: its whole filter and its bias are zero
                dead = (w == 0).flatten(1).all(dim=1)
                assert dead.any() and ((w == 0).flatten(1).any(dim=1) == dead).all()
                if module.bias is not None:
                    assert (module.bias[dead] == 0).all()


def test_channel_masks_also_zero_the_bn_that_follows(fresh) -> None:
    model = sparsify(fresh("hpigcn_rp"), 0.9, granularity="channel")
    convbn = model.blocks[4].gcn.conv_out
    dead = (convbn.conv.weight == 0).flatten(1).all(dim=1)
    assert dead.any()
    with torch.no_grad():
        assert (convbn.bn.weight[dead] == 0).all() and (convbn.bn.bias[dead] == 0).all()
        assert (convbn.bn.weight[~dead] != 0).all()


def test_stgcn_graph_conv_channels_are_pruned_across_all_partitions(fresh) -> None:
    # The K partitions of channel c are summed into one channel: they share one score.
    model = sparsify(fresh("stgcn"), 0.9, granularity="channel")
    block = model.blocks[5]
    k, c = block.partitions, block.out_channels
    with torch.no_grad():
        dead = (block.gcn.weight == 0).flatten(1).all(dim=1).view(k, c)
    assert dead.any() and (dead == dead[0]).all()


def test_only_block_convs_are_masked_unless_asked(fresh) -> None:
    model = sparsify(fresh("hpigcn_rp"), 0.5)
    names = set(masked_convs(model))
    assert names and all(n.startswith("blocks.") for n in names)
    assert not any(parametrize.is_parametrized(m) for m in model.modules()
                   if isinstance(m, (nn.BatchNorm2d, nn.Linear)))
    assert not parametrize.is_parametrized(model.blocks[0].gcn)  # the PA adjacency stays dense
    wider = sparsify(fresh("hpigcn_rp"), 0.5, classifier=True, stem=True)
    extra = set(masked_convs(wider)) - names
    assert extra == {"embed.position", "embed.motion", "head"}


def test_sparsify_keeps_the_outputs_at_level_zero(fresh, clips) -> None:
    dense = fresh("stgcn").eval()
    x = clips()
    with torch.no_grad():
        want = dense(x)
        got = sparsify(dense, 0.0, granularity="channel")(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize(("kwargs", "field", "fix"), [
    ({"level": 1.0}, "sparsity.level", "e.g. 0.9"),
    ({"level": -0.1}, "sparsity.level", "e.g. 0.9"),
    ({"level": "0.9"}, "sparsity.level", "e.g. 0.9"),
    ({"level": None}, "sparsity.level", "sparse_ensemble"),
    ({"level": 0.9, "granularity": "row"}, "sparsity.granularity", "element, kernel, channel, ctf"),
    ({"level": 0.9, "scope": "layer"}, "sparsity.scope", "global, block"),
    ({"level": 0.9, "schedule": {"warmup": 1}}, "sparsity.schedule.warmup", "warmup_epochs"),
    ({"level": 0.9, "schedule": {"kind": "cosine"}}, "sparsity.schedule.kind", "linear or step"),
    ({"level": 0.9, "schedule": {"ramp_epochs": -1}}, "sparsity.schedule.ramp_epochs", ">= 0"),
])
def test_bad_settings_name_the_field_and_the_fix(fresh, kwargs: dict, field: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        sparsify(fresh("stgcn"), **kwargs)
    assert field in str(err.value) and fix in str(err.value)


def test_sparsifying_twice_is_an_error(fresh) -> None:
    model = sparsify(fresh("stgcn"), 0.5)
    with pytest.raises(ConfigError, match="sparse already"):
        sparsify(model, 0.9)
