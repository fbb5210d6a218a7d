"""A bundle's manifest carries its layout's definition: loading it makes a user's layout known in
the serving process, and a different layout of the same name there is refused."""

from __future__ import annotations

import pytest

from skelray.data import get_layout
from skelray.export.bundle import ensure_layout
from skelray.export.manifest import BundleError, Manifest

FAN = {"name": "fan4", "joints": ["hub", "a", "b", "c"], "edges": [[1, 0], [2, 0], [3, 0]], "center": 0}


def _manifest(layout_def: dict, layout: str | None = None) -> Manifest:
    # Only the layout fields matter here; the rest of a manifest is checked by read_manifest.
    return Manifest.model_construct(layout=layout or layout_def["name"], layout_def=layout_def)


def test_the_manifests_layout_becomes_known_and_a_clash_is_refused():
    ensure_layout(_manifest(FAN))
    assert get_layout("fan4").joints == ("hub", "a", "b", "c")
    ensure_layout(_manifest(FAN))  # the same definition again: fine
    with pytest.raises(BundleError, match="manifest.json: layout_def: defines layout 'fan4', but a different"):
        ensure_layout(_manifest({**FAN, "center": 1}))
    with pytest.raises(BundleError, match="defines layout 'kinect_v1_20', but a different"):
        ensure_layout(_manifest({**FAN, "name": "kinect_v1_20"}))
    with pytest.raises(BundleError, match="the manifest's layout is 'other'"):
        ensure_layout(_manifest(FAN, layout="other"))
