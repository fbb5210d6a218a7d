"""One training epoch: metrics read once per epoch, prefetch, precision and compile."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
from torch import nn

from skelray.config import TrialConfig
from skelray.data.synthetic import synthetic
from skelray.data.transforms import Preprocess
from skelray.errors import ConfigError
from skelray.models import create_model
from skelray.train.accel import resolve_precision
from skelray.train.loop import Split, batches, make_optimizer, make_schedule, train_epoch
from skelray.train.prefetch import prefetch


def _setup(seed: int = 0, per_class: int = 10):
    ds = synthetic(num_classes=4, num_per_class=per_class, frames=20, seed=seed)
    split = Split([s.keypoints for s in ds.sequences], np.array([s.label for s in ds.sequences]))
    pp = Preprocess(ds.layout, frames=16, persons=1, rotate_degrees=10, scale=(0.9, 1.1), mirror=True)
    torch.manual_seed(seed)
    model = create_model("hpigcn_rp", num_classes=4, layout=ds.layout, num_persons=1, width=0.125)
    return split, pp, model


def _train(model: nn.Module, split: Split, pp: Preprocess, epochs: int = 2, **kwargs):
    opt = make_optimizer(model, "sgd", 0.05)
    sched = make_schedule(opt, kind="cosine", epochs=2, steps_per_epoch=5)
    rng = np.random.default_rng(3)
    out = [train_epoch(model, split, pp, opt, sched, batch_size=8, rng=rng, **kwargs) for _ in range(epochs)]
    return out, rng


def _per_step_sync_epoch(model, split, pp, opt, sched, rng) -> dict[str, float]:
    """The loop as it was: the loss and the hits read back to the host every step."""
    model.train()
    total, correct, loss_sum = 0, 0, 0.0
    for x, y in batches(split, pp, 8, train=True, rng=rng):
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += len(y)
        correct += int((logits.argmax(1) == y).sum())
        loss_sum += float(loss.detach()) * len(y)
    return {"loss": loss_sum / total, "top1": correct / total}


def test_metrics_read_once_per_epoch_equal_per_step_reads() -> None:
    split, pp, model = _setup(per_class=6)
    ref_model = copy.deepcopy(model)
    got, _ = _train(model, split, pp)
    opt = make_optimizer(ref_model, "sgd", 0.05)
    sched = make_schedule(opt, kind="cosine", epochs=2, steps_per_epoch=5)
    rng = np.random.default_rng(3)
    want = [_per_step_sync_epoch(ref_model, split, pp, opt, sched, rng) for _ in range(2)]
    assert got == want  # exactly: float64 sums on the device, in the same order
    assert 0 < want[1]["top1"] <= 1 and want[0]["loss"] != want[1]["loss"]


def test_prefetch_trains_on_the_same_batches() -> None:
    split, pp, model = _setup(per_class=6)
    twin = copy.deepcopy(model)
    plain, rng_plain = _train(model, split, pp, prefetch_batches=0)
    ahead, rng_ahead = _train(twin, split, pp, prefetch_batches=2)
    assert plain == ahead
    assert rng_plain.bit_generator.state == rng_ahead.bit_generator.state
    for a, b in zip(model.state_dict().values(), twin.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_prefetch_yields_in_order_and_raises_the_producer_error() -> None:
    assert list(prefetch(iter(range(50)), 3)) == list(range(50))
    assert list(prefetch(range(5), 0, prepare=lambda v: v * 2)) == [0, 2, 4, 6, 8]

    def failing():
        yield 1
        raise ValueError("bad clip 2")

    got = []
    with pytest.raises(ValueError, match="bad clip 2"):
        for item in prefetch(failing(), 2):
            got.append(item)  # noqa: PERF402 - what arrived before the error
    assert got == [1]


def test_prefetch_stops_its_thread_and_closes_the_source_on_early_exit() -> None:
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    before = threading.active_count()
    for i in prefetch(endless(), 2):
        if i == 3:
            break
    assert closed.wait(5) and threading.active_count() == before
    with pytest.raises(RuntimeError, match="step failed"):  # an exception in the consumer's step
        for _ in prefetch(endless(), 2):
            raise RuntimeError("step failed")
    assert threading.active_count() == before


def test_precision_resolves_per_device_and_names_the_field() -> None:
    assert resolve_precision("auto", "cpu").autocast is None
    assert resolve_precision("bf16", "cpu").autocast == torch.bfloat16
    assert not resolve_precision("bf16", "cpu").scaled
    with pytest.raises(ConfigError, match="train.precision") as err:
        resolve_precision("fp16", "cpu")
    assert "auto" in str(err.value)
    with pytest.raises(ConfigError, match="unknown precision"):
        resolve_precision("fp8", "cpu")


def test_bf16_autocast_trains_on_the_cpu() -> None:
    """The GPU's bf16 path (autocast, no scaler), run where it can be tested: close to fp32."""
    split, pp, model = _setup(per_class=6)
    twin = copy.deepcopy(model)
    fp32, _ = _train(model, split, pp, epochs=1)
    bf16, _ = _train(twin, split, pp, epochs=1, precision="bf16")
    assert np.isfinite(bf16[0]["loss"])
    assert abs(bf16[0]["loss"] - fp32[0]["loss"]) < 0.05 * fp32[0]["loss"]


def test_train_section_precision_keys() -> None:
    base = {"data": {"format": "synthetic"}, "model": {"name": "stgcn"}}
    cfg = TrialConfig.from_tune({**base, "train": {"amp": True}})
    assert cfg.train.precision_on("cuda") == "fp16" and cfg.train.precision_on("cpu") == "fp32"
    default = TrialConfig.from_tune(base).train
    assert default.precision_on("cuda") == "auto"
    assert (default.prefetch_on("cuda"), default.prefetch_on("cpu")) == (2, 0)
    assert TrialConfig.from_tune({**base, "train": {"prefetch": 3}}).train.prefetch_on("cpu") == 3
    with pytest.raises(ConfigError, match="contradicts precision"):
        TrialConfig.from_tune({**base, "train": {"amp": True, "precision": "bf16"}})
    with pytest.raises(ConfigError, match="precision"):
        TrialConfig.from_tune({**base, "train": {"precision": "half"}})


@pytest.mark.slow
def test_compiled_forward_trains_like_eager() -> None:
    """Slow: compiling takes minutes on 2 loaded cores. The same steps, to rounding: the fused
    kernels round differently, and SGD carries the difference along, so one epoch at 1%."""
    split, pp, model = _setup(per_class=6)
    twin = copy.deepcopy(model)
    eager, _ = _train(model, split, pp, epochs=1)
    compiled, _ = _train(twin, split, pp, epochs=1, forward=torch.compile(twin))
    assert eager[0]["top1"] > 0 and abs(compiled[0]["loss"] - eager[0]["loss"]) < 1e-2 * eager[0]["loss"]


def test_a_trial_trains_where_train_device_says_whatever_it_was_given() -> None:
    from skelray.train.trial import trial_device

    assert trial_device("auto", gpu=True) == "cuda"
    assert trial_device("auto", gpu=False) == "cpu"
    assert trial_device("cpu", gpu=True) == "cpu"  # asked for the CPU: a GPU beside it is not used
    assert trial_device("cuda", gpu=True) == "cuda"
    with pytest.raises(ConfigError, match="holds no usable GPU") as err:
        trial_device("cuda", gpu=False)
    assert err.value.where == "train.device"
