"""Load a bundle (JSON + safetensors, nothing unpickled) and run it in-process.

``load_bundle(dir)`` gives a ``Bundle`` whose ``predict(clips)`` is the offline ensemble: each
member's stream through ``skelray.data.Preprocess``, its fused model, the weighted logits and
their softmax. The Serve deployments are built from the same pieces (``load_member``,
``StreamPlan``, ``skelray.ensemble.combine``), so the endpoint answers what this answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from skelray.ensemble.combine import answer, weighted_logits
from skelray.export._structure import build_structure, load_state
from skelray.export.manifest import (
    SERVE_DTYPES,
    BundleError,
    Manifest,
    MemberSpec,
    preprocess_key,
    read_manifest,
)


def torch_dtype(name: str, *, where: str = "dtype") -> torch.dtype:
    """The torch dtype of a serving dtype name (``SERVE_DTYPES``: float32, bfloat16)."""
    if name not in SERVE_DTYPES:
        raise BundleError(f"unknown serving dtype '{name}'", where=where,
                          fix=f"use one of {', '.join(SERVE_DTYPES)}")
    return getattr(torch, name)


def ensure_layout(manifest: Manifest) -> None:
    """Make the bundle's layout known in this process from the manifest's own definition (a
    user's layout needs no file where the bundle is served), and refuse a known layout of the
    same name that differs from the one the models were trained on."""
    from skelray.data.layouts import adopt_layout
    from skelray.errors import LayoutError

    where = "manifest.json: layout_def"
    try:
        layout = adopt_layout(manifest.layout_def, source=where)
    except LayoutError as exc:
        raise BundleError(exc.message, where=where,
                          fix="serve with the skelray version that exported it, in a process that does "
                              "not define another layout of that name") from None
    if layout.name != manifest.layout:
        raise BundleError(f"defines layout '{layout.name}', the manifest's layout is '{manifest.layout}'",
                          where=where, fix="re-export the bundle")


def load_member(root: str | Path, member: MemberSpec, *, device: str = "cpu",
                verify: bool = True, dtype: str = "float32") -> nn.Module:
    """One member's fused model, in eval mode, from its safetensors file, on ``device`` at
    ``dtype``: float32, or a dtype the export checked it at (``member.check.dtypes``). Its
    input must be cast to the same dtype."""
    target = torch_dtype(dtype)  # an unknown name is refused here
    member.require_checked(dtype)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(root) / member.weights_file
    where = f"{path} (member {member.name})"
    if not path.is_file():
        raise BundleError("weights file is missing", where=where,
                          fix="copy the whole bundle folder, or re-export it with `skelray export`")
    if verify:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != member.sha256:
            raise BundleError("weights file does not match the manifest's sha256 (changed or truncated)",
                              where=where, fix="copy the bundle again, or re-export it")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"is not a readable safetensors file ({exc})", where=where,
                          fix="re-export the bundle") from None
    module = build_structure(member.model)
    load_state(module, tensors, where=where, allow_reshape=member.compacted, overrides=member.structure)
    return module.to(device=device, dtype=target).eval()


@dataclass
class StreamPlan:
    """The distinct preprocessings of a bundle: members that share one are fed one array."""

    keys: list[str]  # one per distinct preprocessing, in member order
    fields: dict[str, dict[str, Any]]  # key -> Preprocess fields
    member_key: dict[str, str]  # member name -> key

    @classmethod
    def of(cls, manifest: Manifest) -> StreamPlan:
        keys: list[str] = []
        fields: dict[str, dict[str, Any]] = {}
        member_key: dict[str, str] = {}
        for m in manifest.members:
            k = preprocess_key(m.preprocess)
            if k not in fields:
                keys.append(k)
                fields[k] = m.preprocess
            member_key[m.name] = k
        return cls(keys, fields, member_key)

    def preprocessors(self) -> dict[str, Any]:
        from skelray.data.transforms import Preprocess

        out = {}
        for k, f in self.fields.items():
            f = dict(f)
            if f.get("scale") is not None:
                f["scale"] = tuple(f["scale"])
            out[k] = Preprocess(**f)
        return out


def run_streams(preprocessors: dict[str, Any], clips: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Each distinct preprocessing of every clip, stacked ``(N, M, T, V, C)``."""
    return {k: pp.batch(clips) for k, pp in preprocessors.items()}


class Bundle:
    """A loaded bundle: manifest, fused members and the offline ensemble."""

    def __init__(self, root: Path, manifest: Manifest, models: dict[str, nn.Module], device: str,
                 dtype: str = "float32") -> None:
        self.root, self.manifest, self.models, self.device = root, manifest, models, device
        self.dtype = torch_dtype(dtype)
        self.plan = StreamPlan.of(manifest)
        self.preprocessors = self.plan.preprocessors()

    @property
    def weights(self) -> list[float]:
        return [m.weight for m in self.manifest.members]

    @torch.inference_mode()
    def member_logits(self, clips: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        streams = run_streams(self.preprocessors, clips)
        out = {}
        for m in self.manifest.members:
            x = torch.from_numpy(streams[self.plan.member_key[m.name]]).to(self.device, self.dtype)
            out[m.name] = self.models[m.name](x).float().cpu().numpy()
        return out

    def logits(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        per = self.member_logits(clips)
        return weighted_logits([per[m.name] for m in self.manifest.members], self.weights)

    def predict(self, clips: Sequence[np.ndarray], *, k: int = 5) -> dict[str, Any]:
        """``{"probabilities": (N, classes), "top_k": [[{index, label, probability}]]}``."""
        return answer(self.logits(clips), k, self.manifest.class_names)


def load_bundle(root: str | Path, *, device: str = "cpu", verify: bool = True, dtype: str = "float32") -> Bundle:
    """Read the manifest, check it, and load every member's fused weights at ``dtype``."""
    root = Path(root)
    manifest = read_manifest(root)
    ensure_layout(manifest)
    models = {m.name: load_member(root, m, device=device, verify=verify, dtype=dtype) for m in manifest.members}
    return Bundle(root, manifest, models, device, dtype)
