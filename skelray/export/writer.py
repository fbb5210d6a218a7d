"""Write a bundle: each member's fused (and compacted, when sparse) weights plus the manifest.

Each member's inference form is written, read back through the loader (so what is checked
is what will be served), and run against its training form on the same inputs: random
tensors of the input shape, synthetic clips through the member's ``Preprocess``, and, when
the sweep's data can be read here, the first validation clips (also compared with the logits
the trial saved for them). Export fails if the largest difference exceeds the tolerance
(1e-4) times ``max(1, largest |logit|)``: an absolute bound for logits up to 1, a relative one
above, since float32 rounding alone passes 1e-4 once logits reach the hundreds (random inputs
drive an hpigcn_rp's logits past 1000; its real clips differ by ~3e-6). The check is repeated
at each serving dtype asked for (bfloat16 by default), against the same float32 training-form
logits, with that dtype's tolerance (``manifest.SERVE_DTYPES``).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skelray import record
from skelray.errors import ConfigError, SkelrayError
from skelray.export._structure import build_structure, load_state, state_tensors, structure_overrides
from skelray.export.manifest import (
    MANIFEST,
    SERVE_DTYPES,
    BundleError,
    CheckInfo,
    Manifest,
    MemberSpec,
    ModelSpec,
)

DEFAULT_TOLERANCE = SERVE_DTYPES["float32"]
DEFAULT_DTYPES = ("float32", "bfloat16")  # serving dtypes every member is checked at
CHECK_CLIPS = 8  # clips per input kind: enough to exercise batching, cheap for big models


@dataclass
class _Source:
    """One member to export: where its checkpoint is and how much it counts."""

    trial: str  # "<run>/<trial_name>"
    checkpoint: Path
    weight: float
    metrics: dict[str, float | None]
    latency_ms: float | None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:48] or "member"


def _sources(source: Path, trial: str | None) -> tuple[Path, list[_Source], dict[str, Any], dict[str, Any]]:
    """(experiment folder, members, manifest.source, ensemble metrics) for an ENSEMBLE.json or a trial."""
    from skelray.ensemble._candidates import load_candidates
    from skelray.ensemble.builder import EnsembleSpec, find_candidate

    if source.is_file():
        if trial is not None:
            raise ConfigError("--trial applies to an experiment folder, not an ensemble file",
                              where="--trial",
                              fix="drop --trial, or pass the experiment folder instead")
        spec = EnsembleSpec.load(source)
        exp = Path(spec.experiment)
        members = [_Source(m.key, exp / m.checkpoint, m.weight,
                           {"val_top1": m.val_top1, "test_top1": m.test_top1},
                           m.latency_ms) for m in spec.members]
        metrics = {"val_top1": spec.ensemble.val_top1, "test_top1": spec.ensemble.test_top1}
        return exp, members, {"experiment": str(exp), "ensemble_file": str(source.resolve())}, metrics
    if not source.is_dir():
        raise ConfigError("is neither an ENSEMBLE.json nor an experiment folder", where=str(source),
                          fix="pass `skelray ensemble build`'s output, or a sweep folder with --trial")
    if trial is None:
        raise ConfigError("an experiment folder needs --trial", where="--trial",
                          fix="name the trial to export (e.g. --trial t00001), or export an ENSEMBLE.json")
    cands, _ = load_candidates(source)
    c = cands[find_candidate(cands, trial)]
    metrics = {"val_top1": c.val_top1, "test_top1": c.test_top1}
    member = _Source(c.key, source.resolve() / c.checkpoint, 1.0, metrics, c.latency_ms)
    return source.resolve(), [member], {"experiment": str(source.resolve()), "trial": c.key}, metrics


def _val_clips(src: _Source) -> tuple[list[np.ndarray], np.ndarray] | None:
    """The first validation clips of the trial's dataset, and the logits it saved for them;
    None when the data cannot be read here (moved, another machine)."""
    from skelray.train.data import load_splits

    try:
        cfg = record.load_trial_config(src.checkpoint.parent)  # the trial folder's params.json
        val = load_splits(cfg.data).splits["val"]
        saved = record.load_logits(src.checkpoint).val_logits[:CHECK_CLIPS]
    except (SkelrayError, OSError, ValueError, KeyError):
        return None
    n = min(CHECK_CLIPS, len(val), len(saved))
    return (list(val.clips[:n]), saved[:n]) if n else None


def _check_inputs(pp: Any, in_channels: int, num_joints: int,
                  val: list[np.ndarray] | None) -> dict[str, np.ndarray]:
    from skelray.data.synthetic import synthetic

    gen = np.random.default_rng(0)
    inputs = {"random": gen.standard_normal((4, pp.persons, pp.frames, num_joints,
                                             in_channels)).astype(np.float32)}
    if in_channels in (2, 3):
        # Clips a little longer than the model's frames, so sampling picks frames as it would.
        ds = synthetic(num_classes=4, num_per_class=2, layout=pp.layout, frames=pp.frames + 3, seed=1,
                       persons=pp.persons, channels=in_channels)
        inputs["synthetic"] = pp.batch([s.keypoints for s in ds.sequences[:CHECK_CLIPS]])
    if val:
        inputs["val"] = pp.batch(val)
    return inputs


@torch.inference_mode()
def _reference(trained: torch.nn.Module, inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The training form's float32 logits per input kind: what every check compares with."""
    return {kind: trained(torch.from_numpy(x)) for kind, x in inputs.items()}


@torch.inference_mode()
def _compare(trained: torch.nn.Module, fused: torch.nn.Module, inputs: dict[str, np.ndarray],
             dtype: torch.dtype = torch.float32, reference: dict[str, torch.Tensor] | None = None
             ) -> tuple[dict[str, float], float, dict[str, np.ndarray]]:
    """(largest |fused - trained| logit per input kind, largest |trained| logit, fused logits),
    the fused form run at ``dtype`` and the training form in float32 (its logits ``reference``
    when given, so checks at several dtypes run it once)."""
    reference = reference if reference is not None else _reference(trained, inputs)
    diffs, scale, fused_out = {}, 0.0, {}
    for kind, x in inputs.items():
        t = torch.from_numpy(x)
        a, b = reference[kind], fused(t.to(dtype)).float()
        diffs[kind] = float((a - b).abs().max())
        scale = max(scale, float(a.abs().max()))
        fused_out[kind] = b.numpy()
    return diffs, scale, fused_out


def _check_dtypes(name: str, trained: torch.nn.Module, served: torch.nn.Module, inputs: dict[str, np.ndarray],
                  dtypes: tuple[str, ...], where: str, reference: dict[str, torch.Tensor] | None = None
                  ) -> dict[str, float]:
    """The check repeated at each serving dtype but float32: largest difference per dtype."""
    from skelray.export.bundle import torch_dtype

    out = {}
    for kind in dtypes:
        if kind == "float32":
            continue
        target = torch_dtype(kind, where="dtypes")
        diffs, scale, _ = _compare(trained, copy.deepcopy(served).to(target), inputs, target, reference)
        worst, tol = max(diffs.values()), SERVE_DTYPES[kind]
        if not worst <= tol * max(1.0, scale):
            raise BundleError(f"member {name}: in {kind} the fused form differs from the training form by "
                              f"{worst:.3g} (tolerance {tol:g} x max(1, |logit| {scale:.3g}))", where=where,
                              fix=f"serve this member in float32 (export with --dtypes float32), "
                                  f"or report the model: {kind} should stay within {tol:g}")
        out[kind] = worst
    return out


def _layout_def(name: str) -> dict[str, Any]:
    from skelray.data.layouts import get_layout

    return get_layout(name).to_dict()  # read back with layout_from_dict (skelray.export.bundle)


def _export_member(i: int, src: _Source, out: Path, *, tolerance: float, check_data: bool,
                   dtypes: tuple[str, ...] = DEFAULT_DTYPES) -> tuple[MemberSpec, record.TrialRecord]:
    from safetensors.torch import load_file, save_file

    from skelray import __version__
    from skelray.data.layouts import get_layout
    from skelray.data.transforms import Preprocess
    from skelray.models import carries_masks, inference_form, profile
    from skelray.train.trial import model_from_checkpoint

    if not (src.checkpoint / record.TRIAL_FILE).is_file():
        raise BundleError(f"has no {record.TRIAL_FILE}", where=str(src.checkpoint),
                          fix="export from a sweep written by this skelray version "
                              f"(its checkpoints hold {record.TRIAL_FILE})")
    trained, info = model_from_checkpoint(src.checkpoint)
    m = info.require_model(str(src.checkpoint / record.TRIAL_FILE))
    if info.preprocess is None:
        raise BundleError(f"{record.TRIAL_FILE} has no 'preprocess' section", where=str(src.checkpoint),
                          fix="export from a checkpoint a skelray trial wrote (it says how clips are fed)")
    pp = Preprocess(**info.preprocess).for_inference()  # serving never augments
    name = f"m{i}-{_slug(src.trial.split('/')[-1])}"
    model = ModelSpec(name=m.name, kwargs=m.kwargs, num_classes=m.num_classes, layout=m.layout,
                      in_channels=m.in_channels, num_persons=m.num_persons)
    compacted = bool(m.sparsity) or carries_masks(trained)
    rel = f"members/{name}.safetensors"
    fused = inference_form(trained).eval()
    save_file(state_tensors(fused), str(out / rel), metadata={"skelray": __version__, "member": name})
    structure = structure_overrides(build_structure(model), fused) if compacted else {}
    # Read back as a server would: the structure from create_model + fuse, the weights from the file.
    served = load_state(build_structure(model), load_file(str(out / rel)), where=str(out / rel),
                        allow_reshape=compacted, overrides=structure)
    val = _val_clips(src) if check_data else None
    inputs = _check_inputs(pp, m.in_channels, get_layout(m.layout).num_joints, val[0] if val else None)
    reference = _reference(trained, inputs)
    diffs, scale, outs = _compare(trained, served, inputs, reference=reference)
    worst = max(diffs.values())
    if not worst <= tolerance * max(1.0, scale):  # "not <=" also catches NaN
        raise BundleError(f"member {name}: the fused form differs from the training form by {worst:.3g} "
                          f"(tolerance {tolerance:g} x max(1, |logit| {scale:.3g}))",
                          where=str(src.checkpoint),
                          fix="a block's fuse() is not exact for this model; report it, "
                              "or pass a larger --tolerance")
    at_dtypes = _check_dtypes(name, trained, served, inputs, dtypes, str(src.checkpoint), reference)
    val_diff = float(np.abs(outs["val"] - val[1]).max()) if val else None
    params, macs = profile(served, (1, pp.persons, pp.frames, inputs["random"].shape[3], m.in_channels))
    spec = MemberSpec(
        name=name, trial=src.trial, model=model, stream=pp.stream, preprocess=dataclasses.asdict(pp),
        weight=src.weight, metrics=src.metrics, params=int(params), macs=int(macs),
        latency_ms_b1=_measured_latency(src, info),
        sparsity=m.sparsity, compacted=compacted, structure=structure, weights_file=rel,
        sha256=hashlib.sha256((out / rel).read_bytes()).hexdigest(),
        check=CheckInfo(max_abs_diff=worst, logit_scale=scale, tolerance=tolerance,
                        inputs={k: len(v) for k, v in inputs.items()}, per_input=diffs,
                        val_logits_max_abs_diff=val_diff, dtypes=at_dtypes))
    return spec, info


def _measured_latency(src: _Source, info: record.TrialRecord) -> float | None:
    """The member's batch-1 latency: its sweep's one measurement of the member's structure
    (``costs.json`` of ``<sweep>/<run>/<trial>/<checkpoint>``, timed alone on a node), else what
    the ensemble file or candidate carried (sweeps of older versions: the trial's own timing)."""
    from skelray.sweep.results import Location, load_costs

    key, up = info.sizes.get(record.STRUCTURE), src.checkpoint.resolve().parents
    if key and len(up) > 2:
        measured = load_costs(Location.parse(str(up[2]))).entries.get(key)
        if measured is not None and measured.latency_ms(1) is not None:
            return measured.latency_ms(1)
    return src.latency_ms


def export_bundle(source: str | Path, output: str | Path, *, trial: str | None = None,
                  tolerance: float = DEFAULT_TOLERANCE, check_data: bool = True, overwrite: bool = False,
                  name: str | None = None, dtypes: tuple[str, ...] = DEFAULT_DTYPES) -> Manifest:
    """Export ``source`` (an ENSEMBLE.json, or an experiment folder with ``trial``) to ``output``;
    each member is checked at every serving dtype of ``dtypes`` (float32 always)."""
    from skelray import __version__

    source, output = Path(source), Path(output)
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise ConfigError("exists and is not empty", where=str(output),
                          fix="choose a new folder or pass --overwrite")
    _, sources, origin, metrics = _sources(source, trial)
    output.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and moved into place at the end: a failed export leaves no half bundle.
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=output.parent))
    try:
        (tmp / "members").mkdir()
        members, infos = [], []
        for i, src in enumerate(sources):
            spec, info = _export_member(i, src, tmp, tolerance=tolerance, check_data=check_data,
                                        dtypes=tuple(dtypes))
            members.append(spec)
            infos.append(info)
        first = members[0].model
        for mem in members[1:]:
            for key in ("layout", "in_channels", "num_classes"):
                if getattr(mem.model, key) != getattr(first, key):
                    raise BundleError(f"member {mem.name} has {key} {getattr(mem.model, key)}, "
                                      f"{members[0].name} has {getattr(first, key)}", where=str(source),
                                      fix="ensemble only trials trained on the same data")
        classes = infos[0].class_names or [str(c) for c in range(first.num_classes)]
        manifest = Manifest(
            name=name or output.name, created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            skelray_version=__version__, source=origin, layout=first.layout,
            layout_def=_layout_def(first.layout),
            num_joints=len(_layout_def(first.layout)["joints"]), in_channels=first.in_channels,
            frames=max(int(m.preprocess["frames"]) for m in members),
            persons=max(int(m.preprocess["persons"]) for m in members),
            num_classes=first.num_classes, class_names=list(classes), metrics=metrics, members=members)
        (tmp / MANIFEST).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2))
        if output.exists():
            shutil.rmtree(output)
        tmp.rename(output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest
