"""Bundles: a sweep's chosen members in fused (and compacted) form, ready to serve.

``export_bundle(ENSEMBLE.json | sweep_dir, out, trial=...)`` writes ``manifest.json`` and one
safetensors file per member after checking each fused member against its training form;
``load_bundle(out)`` rebuilds them without unpickling anything and runs the ensemble offline.
"""

from __future__ import annotations

from skelray.export.bundle import Bundle, StreamPlan, load_bundle, load_member
from skelray.export.manifest import SCHEMA_VERSION, BundleError, Manifest, MemberSpec, read_manifest
from skelray.export.writer import export_bundle

__all__ = [
    "SCHEMA_VERSION",
    "Bundle",
    "BundleError",
    "Manifest",
    "MemberSpec",
    "StreamPlan",
    "export_bundle",
    "load_bundle",
    "load_member",
    "read_manifest",
]
