"""The bundle manifest: everything needed to rebuild, feed and combine the members, as JSON.

A bundle is a folder::

    manifest.json                 this schema (``schema_version`` first: readers check it)
    members/<name>.safetensors    each member's fused (and, when sparse, compacted) weights

Nothing in a bundle is pickled: loading reads JSON and safetensors only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from skelray.config import validate_or_raise
from skelray.errors import DataError

SCHEMA_VERSION = 1
KIND = "skelray-bundle"
MANIFEST = "manifest.json"


class BundleError(DataError):
    """A bundle folder, its manifest or a member's weights are missing, newer or inconsistent."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Model):
    """The ``create_model`` call that gives the member's (unfused) architecture."""

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    num_classes: int
    layout: str
    in_channels: int
    num_persons: int


# The dtypes a member can be served in, and the export check's tolerance at each (times
# max(1, largest |logit|), against the training form in float32). float32 holds the fused form
# to rounding (measured ~5e-7). bfloat16 keeps 8 bits of mantissa: on CPU bf16 kernels its
# logits differed from float32's by 0.35-0.6% of the largest for randomly initialised
# hpigcn_rp (width 0.25, 1.0) and stgcn, and by 1.6% for a 2-epoch-trained hpigcn_rp member on
# random clips (benchmarks/gpu_check.py's dry run), so 5e-2 leaves 3x headroom and still fails
# a member whose fused form is wrong.
SERVE_DTYPES: dict[str, float] = {"float32": 1e-4, "bfloat16": 5e-2}


class CheckInfo(_Model):
    """The export-time comparison of the fused form with the training form."""

    max_abs_diff: float  # largest |fused - trained| logit over every input below
    # largest |trained| logit: the check passes if max_abs_diff <= tolerance * max(1, this)
    logit_scale: float
    tolerance: float
    inputs: dict[str, int]  # input kind ("random", "synthetic", "val") -> clips compared
    per_input: dict[str, float] = Field(default_factory=dict)  # input kind -> its largest |fused - trained|
    val_logits_max_abs_diff: float | None = None  # fused vs the logits the trial saved (same clips)
    # Each serving dtype other than float32 the member was checked at -> its largest |fused at that
    # dtype - trained in float32| over the same inputs (tolerance: SERVE_DTYPES). A member is
    # served only at float32 and the dtypes listed here.
    dtypes: dict[str, float] = Field(default_factory=dict)


class MemberSpec(_Model):
    name: str  # unique in the bundle; also its Serve deployment name
    trial: str  # "<run>/<trial_name>" in the experiment it came from
    model: ModelSpec
    stream: str
    preprocess: dict[str, Any]  # skelray.data.Preprocess fields, augmentation off
    weight: float = Field(gt=0)
    metrics: dict[str, float | None] = Field(default_factory=dict)  # val_top1, test_top1 of the trial
    params: int  # of the fused form
    macs: int  # per clip, of the fused form
    latency_ms_b1: float | None = None  # the sweep's one measurement of its architecture (costs.json)
    sparsity: dict[str, Any] | None = None  # the trial's sparsity config; None = dense
    compacted: bool = False  # sparse: tensor shapes may differ from create_model's (channels removed)
    # module path -> the sizes compaction changed there (set again on load)
    structure: dict[str, dict[str, Any]] = Field(default_factory=dict)
    weights_file: str  # relative to the bundle folder
    sha256: str  # of the weights file
    check: CheckInfo

    def require_checked(self, dtype: str) -> None:
        """Refuse to run this member at a dtype the export did not check it at (float32 always is)."""
        if dtype != "float32" and dtype not in self.check.dtypes:
            raise BundleError(f"member {self.name} was not checked at {dtype} when it was exported",
                              where=f"manifest.json: members[{self.name}].check.dtypes",
                              fix=f"re-export the bundle (skelray export checks {dtype} by default), "
                                  "or serve in float32")


class Manifest(_Model):
    schema_version: int = SCHEMA_VERSION
    kind: Literal["skelray-bundle"] = KIND
    name: str
    created: str  # ISO 8601, UTC
    skelray_version: str
    source: dict[str, Any]  # experiment folder, and the ensemble file or trial it was exported from
    layout: str
    layout_def: dict[str, Any]  # the layout's joints and edges, so custom layouts load anywhere
    num_joints: int
    in_channels: int
    frames: int  # largest frame count a member samples to
    persons: int  # largest person count a member takes
    num_classes: int
    class_names: list[str]
    metrics: dict[str, float | None] = Field(default_factory=dict)  # the ensemble's val/test top-1
    members: list[MemberSpec]

    def public(self) -> dict[str, Any]:
        """What ``GET /v1/models`` shows: the manifest, which holds no weights."""
        return self.model_dump(mode="json")


def read_manifest(bundle: str | Path) -> Manifest:
    """Read and validate ``<bundle>/manifest.json``; every problem names the file and field."""
    root = Path(bundle)
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError("is not a bundle folder", where=str(root),
                          fix="pass the folder `skelray export -o` wrote")
    if not path.is_file():
        raise BundleError("has no manifest.json", where=str(root),
                          fix="re-export it with `skelray export ... -o DIR`")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"is not valid JSON ({exc})", where=str(path), fix="re-export the bundle") from None
    if not isinstance(doc, dict):
        raise BundleError("must hold a JSON object", where=str(path), fix="re-export the bundle")
    version = doc.get("schema_version")
    if not isinstance(version, int):
        raise BundleError(f"schema_version must be an integer, got {version!r}",
                          where=f"{path}: schema_version",
                          fix="re-export the bundle")
    if version > SCHEMA_VERSION:
        raise BundleError(f"schema_version {version} is newer than this skelray reads ({SCHEMA_VERSION})",
                          where=f"{path}: schema_version",
                          fix="upgrade skelray on this machine, or export the bundle with this version")
    manifest = validate_or_raise(Manifest, doc, str(path), error=BundleError, fix="re-export the bundle")
    names = [m.name for m in manifest.members]
    if not names:
        raise BundleError("lists no members", where=f"{path}: members", fix="re-export the bundle")
    if len(set(names)) != len(names):
        raise BundleError("member names repeat", where=f"{path}: members", fix="re-export the bundle")
    return manifest


def preprocess_key(fields: dict[str, Any]) -> str:
    """Members with equal preprocessing share one stream computation; this keys them."""
    return json.dumps(fields, sort_keys=True, default=str)
