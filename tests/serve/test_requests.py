"""Request parsing without a cluster: every accepted body, and a 4xx naming each bad one."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pytest

from skelray.serve._requests import ARROW, NPY, Limits, RequestError, check_length, parse_body

LIMITS = Limits(num_joints=20, in_channels=3, num_classes=4, layout="kinect_v1_20", max_body_bytes=200_000,
                max_instances=4, max_frames=50, max_persons=2, top_k=3)
CLIP = np.random.default_rng(0).standard_normal((1, 10, 20, 3)).astype(np.float32)


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def arrow(clips: list[np.ndarray]) -> bytes:
    table = pa.table({"keypoints": [c.ravel().tolist() for c in clips],
                      "shape": [list(c.shape) for c in clips]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def reject(body: bytes, ctype: str = "application/json", status: int = 422, match: str = "",
           **kw) -> RequestError:
    with pytest.raises(RequestError, match=match) as info:
        parse_body(body, ctype, LIMITS, **kw)
    assert info.value.status == status
    return info.value


def test_every_body_format_gives_the_same_clips():
    two = [CLIP, CLIP * 2]
    forms = [
        (json.dumps({"instances": [c.tolist() for c in two]}).encode(), "application/json"),
        (json.dumps({"instances": [{"keypoints": c.tolist()} for c in two]}).encode(),
         "application/json; charset=utf-8"),
        (npy(np.stack(two)), NPY),
        (arrow(two), ARROW),
    ]
    for body, ctype in forms:
        clips, k = parse_body(body, ctype, LIMITS)
        assert k == 3 and len(clips) == 2
        for got, want in zip(clips, two):
            assert got.dtype == np.float32 and np.array_equal(got, want)
    clips, _ = parse_body(npy(CLIP), NPY, LIMITS)
    assert len(clips) == 1


def test_fast_json_decoding_gives_what_the_json_module_gives():
    # float64 values at every scale (what a client's float() gives), not only float32 ones
    values = np.random.default_rng(1).standard_normal((1, 10, 20, 3)) * np.logspace(-30, 30, 3)
    body = json.dumps({"keypoints": values.tolist()}).encode()
    (clip,), _ = parse_body(body, "application/json", LIMITS)
    assert np.array_equal(clip, np.asarray(json.loads(body)["keypoints"], dtype=np.float32))
    # what the fast parser refuses goes to the json module: UTF-16 text, a lone surrogate
    (clip,), _ = parse_body(json.dumps({"keypoints": CLIP.tolist()}).encode("utf-16"), "application/json", LIMITS)
    assert np.array_equal(clip, CLIP)
    reject(json.dumps({"keypoints": CLIP.tolist(), "x\ud800": 1}).encode(), match="unknown field")


def test_top_k_from_body_or_query():
    body = json.dumps({"keypoints": CLIP.tolist(), "top_k": 2}).encode()
    assert parse_body(body, "application/json", LIMITS)[1] == 2
    assert parse_body(body, "application/json", LIMITS, query_top_k="4")[1] == 4
    reject(body, match="top_k must be an integer from 1 to 4", query_top_k="9")


def test_malformed_json_is_400():
    reject(b'{"keypoints": [1, 2', status=400, match="not valid JSON.*line 1")
    reject(b"[1, 2]", match="must be an object")
    reject(b'{"keypoints": [], "instances": []}', match="exactly one of")
    reject(b'{"keypoints": [[1]], "extra": 1}', match="unknown field.*extra")


def test_wrong_rank_names_the_instance():
    err = reject(json.dumps({"instances": [CLIP.tolist(), CLIP[0].tolist()]}).encode(),
                 match=r"instances\[1\].*rank 3.*expected 4.*wrap one person")
    assert err.where == "instances[1]"
    reject(json.dumps({"keypoints": [[[1, 2, 3]], [[1, 2]]]}).encode(), match="not a rectangular array")


def test_wrong_joint_or_channel_count():
    reject(json.dumps({"keypoints": CLIP[:, :, :19].tolist()}).encode(),
           match="19 joints per frame, the bundle's layout kinect_v1_20 has 20")
    reject(npy(CLIP[..., :2]), NPY, match="2 channels per joint, the models take 3")


def test_nan_and_infinity_are_refused():
    bad = CLIP.copy()
    bad[0, 4, 7, 1] = np.nan
    reject(npy(bad), NPY, match="NaN or infinite value at person 0, frame 4, joint 7")
    inf = CLIP.copy()
    inf[0, 2, 3, 0] = np.inf
    text = json.dumps({"keypoints": inf.tolist()})
    assert "Infinity" in text  # the JSON token Python (and JavaScript clients) write for inf
    reject(text.encode(), match="NaN or infinite value at person 0, frame 2, joint 3")


def test_limits_on_persons_frames_instances_and_size():
    reject(npy(np.zeros((3, 10, 20, 3), np.float32)), NPY, match="3 persons, at most 2")
    reject(npy(np.zeros((1, 51, 20, 3), np.float32)), NPY, match="51 frames, at most 50")
    reject(npy(np.zeros((5, 1, 10, 20, 3), np.float32)), NPY, match="5 sequences, at most 4")
    reject(npy(np.zeros((1, 0, 20, 3), np.float32)), NPY, match="0 frames")
    reject(b"x" * 200_001, status=413, match="more than the 200,000 allowed")
    with pytest.raises(RequestError) as info:
        check_length("999999999", LIMITS)
    assert info.value.status == 413


def test_binary_bodies_that_are_not_what_they_claim():
    reject(b"not an array", NPY, status=400, match="not a readable .npy")
    reject(npy(np.array(["a", "b"])), NPY, match="dtype must be real numbers")
    obj = io.BytesIO()
    np.save(obj, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    reject(obj.getvalue(), NPY, status=400, match="object arrays are refused")
    reject(b"garbage", ARROW, status=400, match="not an Arrow IPC stream")
    clip = CLIP.ravel().tolist()
    table = pa.table({"keypoints": [clip[:-1]], "shape": [[1, 10, 20, 3]]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    reject(sink.getvalue().to_pybytes(), ARROW, match=r"rows\[0\].*do not fill shape")
    reject(b"{}", "text/plain", status=415, match="unsupported Content-Type 'text/plain'")
