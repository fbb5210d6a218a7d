"""Turning an HTTP body into checked keypoint arrays, or a 4xx that names the problem.

Accepted bodies for ``POST /v1/predict``:

* ``application/json``: ``{"keypoints": [M][T][V][C]}`` (one sequence) or
  ``{"instances": [[M][T][V][C], ...]}`` (several; an instance may also be
  ``{"keypoints": ...}``), with an optional ``"top_k"``.
* ``application/x-npy``: one ``.npy`` array, ``(M, T, V, C)`` for one sequence or
  ``(N, M, T, V, C)`` for several (read with ``allow_pickle=False``).
* ``application/vnd.apache.arrow.stream``: an Arrow IPC stream with one row per sequence:
  ``keypoints`` (list of numbers, the sequence flattened in C order) and ``shape``
  (list of 4 integers: M, T, V, C).

``?top_k=N`` in the URL sets the number of labels returned per sequence.
Nothing here depends on Serve, so every rule is tested without a cluster.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic_core import from_json

from skelray.errors import SkelrayError

JSON, NPY, ARROW = "application/json", "application/x-npy", "application/vnd.apache.arrow.stream"
SHAPE_HELP = "send [M persons][T frames][V joints][C channels]; wrap one person's frames in a list"


class RequestError(SkelrayError):
    """A bad request: ``status`` is the HTTP code to answer with (400, 413, 415 or 422)."""

    def __init__(self, status: int, message: str, *, where: str | None = None,
                 fix: str | None = None) -> None:
        self.status = status
        super().__init__(message, where=where, fix=fix)

    def body(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.where, "status": self.status}


@dataclass(frozen=True)
class Limits:
    """What the endpoint accepts; built from the serve args and the bundle's manifest."""

    num_joints: int
    in_channels: int
    num_classes: int
    layout: str
    max_body_bytes: int
    max_instances: int
    max_frames: int
    max_persons: int
    top_k: int


def check_length(content_length: str | None, limits: Limits) -> None:
    """Refuse an announced body over the limit before reading a byte of it."""
    if content_length is None:
        return
    try:
        size = int(content_length)
    except ValueError:
        raise RequestError(400, f"Content-Length '{content_length}' is not a number",
                           where="Content-Length") from None
    if size > limits.max_body_bytes:
        raise too_large(size, limits)


async def read_body(request: Any, limits: Limits) -> bytes:
    """A Starlette request's body, refused as soon as it passes the limit (a chunked body
    announces no length, so counting is the only guard)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise too_large(size, limits)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(size: int, limits: Limits) -> RequestError:
    return RequestError(413, f"the body is {size:,} bytes, more than the {limits.max_body_bytes:,} allowed",
                        where="body", fix="split the sequences over several requests")


def _top_k(value: Any, limits: Limits, where: str) -> int:
    if value is None:
        return min(limits.top_k, limits.num_classes)
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise RequestError(422, f"top_k must be an integer, got {value!r}", where=where) from None
    if isinstance(value, float) and value != k or not 1 <= k <= limits.num_classes:
        raise RequestError(422, f"top_k must be an integer from 1 to {limits.num_classes}, got {value!r}",
                           where=where)
    return k


def _array(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (ValueError, TypeError):
        raise RequestError(422, "is not a rectangular array of numbers (ragged lists, or non-numbers)",
                           where=where, fix=SHAPE_HELP) from None
    return arr


def _decode_json(body: bytes) -> Any:
    """The JSON document of a body. pydantic_core's parser (a Serve dependency already) decodes a
    clip's nested lists about 4x faster than ``json.loads``, the largest CPU cost of a request
    in the replica beyond the model; anything it refuses (a syntax error, UTF-16, a lone
    surrogate) goes to ``json.loads``, whose verdict and error message are the ones answered."""
    try:
        return from_json(body)
    except ValueError:
        return json.loads(body)


def _from_json(body: bytes) -> tuple[list[tuple[str, np.ndarray]], Any]:
    try:
        doc = _decode_json(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if isinstance(exc, json.JSONDecodeError):
            detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        else:
            detail = "not UTF-8 text"
        raise RequestError(400, f"the body is not valid JSON ({detail})", where="body") from None
    if not isinstance(doc, dict):
        raise RequestError(422, f"the JSON body must be an object, got {type(doc).__name__}", where="body",
                           fix='send {"keypoints": [...]} or {"instances": [...]}')
    has_one, has_many = "keypoints" in doc, "instances" in doc
    if has_one == has_many:
        raise RequestError(422, "give exactly one of 'keypoints' (one sequence) or 'instances' (several)",
                           where="body", fix='send {"keypoints": [M][T][V][C]} or {"instances": [...]}')
    unknown = set(doc) - {"keypoints", "instances", "top_k"}
    if unknown:
        raise RequestError(422, f"unknown field(s) {', '.join(sorted(unknown))}", where="body",
                           fix="use keypoints or instances, and optionally top_k")
    if has_one:
        return [("keypoints", _array(doc["keypoints"], "keypoints"))], doc.get("top_k")
    items = doc["instances"]
    if not isinstance(items, list):
        raise RequestError(422, "must be a list of sequences", where="instances", fix=SHAPE_HELP)
    out = []
    for i, item in enumerate(items):
        where = f"instances[{i}]"
        if isinstance(item, dict):
            if "keypoints" not in item:
                raise RequestError(422, "an object instance needs 'keypoints'", where=where)
            item, where = item["keypoints"], f"{where}.keypoints"
        out.append((where, _array(item, where)))
    return out, doc.get("top_k")


def _from_npy(body: bytes) -> list[tuple[str, np.ndarray]]:
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)  # never unpickle a request
    except (ValueError, OSError, EOFError) as exc:
        raise RequestError(400, f"the body is not a readable .npy array ({exc})", where="body",
                           fix="write it with numpy.save; object arrays are refused") from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise RequestError(422, f"the array's dtype must be real numbers, got {getattr(arr, 'dtype', '?')}",
                           where="body")
    if arr.ndim == 5:
        return [(f"array[{i}]", arr[i].astype(np.float32)) for i in range(arr.shape[0])]
    return [("array", arr.astype(np.float32))]


def _from_arrow(body: bytes) -> list[tuple[str, np.ndarray]]:
    import pyarrow as pa

    try:
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise RequestError(400, f"the body is not an Arrow IPC stream ({exc})", where="body") from None
    for col in ("keypoints", "shape"):
        if col not in table.column_names:
            raise RequestError(422, f"the Arrow table has no '{col}' column", where=col,
                               fix="one row per sequence: keypoints (flattened list of numbers), "
                                   "shape [M, T, V, C]")
    out = []
    shapes = table.column("shape").to_pylist()
    values = table.column("keypoints").combine_chunks()
    for i, shape in enumerate(shapes):
        where = f"rows[{i}]"
        flat = values[i].values
        if shape is None or flat is None:
            raise RequestError(422, "has a null keypoints or shape", where=where)
        try:
            arr = flat.to_numpy(zero_copy_only=False).astype(np.float32).reshape([int(d) for d in shape])
        except (ValueError, TypeError, pa.ArrowInvalid) as exc:
            raise RequestError(422, f"its {len(flat)} values do not fill shape {shape} ({exc})", where=where,
                               fix="shape must be [M, T, V, C] with M*T*V*C values") from None
        out.append((where, arr))
    return out


def check_sequence(arr: np.ndarray, where: str, limits: Limits) -> np.ndarray:
    """One sequence's shape and values against the bundle: rank, joints, channels, limits, finite."""
    if arr.ndim != 4:
        raise RequestError(422, f"has rank {arr.ndim} (shape {tuple(arr.shape)}), expected 4", where=where,
                           fix=SHAPE_HELP)
    m, t, v, c = arr.shape
    if v != limits.num_joints:
        raise RequestError(422, f"has {v} joints per frame, the bundle's layout {limits.layout} has "
                                f"{limits.num_joints}", where=where,
                                fix="send the joints in the layout's order")
    if c != limits.in_channels:
        raise RequestError(422, f"has {c} channels per joint, the models take {limits.in_channels}",
                           where=where)
    if m < 1 or t < 1:
        raise RequestError(422, f"has {m} persons and {t} frames; both must be at least 1", where=where)
    if m > limits.max_persons:
        raise RequestError(422, f"has {m} persons, at most {limits.max_persons} allowed", where=where,
                           fix=f"send the {limits.max_persons} main person(s) only")
    if t > limits.max_frames:
        raise RequestError(422, f"has {t} frames, at most {limits.max_frames} allowed", where=where,
                           fix="send a shorter clip (the models resample it anyway)")
    finite = np.isfinite(arr)
    if not finite.all():
        p, f, j, _ = np.argwhere(~finite)[0]
        raise RequestError(422, f"has a NaN or infinite value at person {p}, frame {f}, joint {j}",
                           where=where,
                           fix="drop or interpolate missing joints before sending")
    return np.ascontiguousarray(arr, dtype=np.float32)


def parse_body(body: bytes, content_type: str | None, limits: Limits, query_top_k: Any = None
               ) -> tuple[list[np.ndarray], int]:
    """The checked sequences of a request and the number of labels to return for each."""
    if len(body) > limits.max_body_bytes:
        raise too_large(len(body), limits)
    ctype = (content_type or JSON).split(";")[0].strip().lower()
    top = query_top_k
    if ctype in (JSON, "text/json", ""):
        items, body_top = _from_json(body)
        top = body_top if top is None else top
    elif ctype == NPY:
        items = _from_npy(body)
    elif ctype == ARROW:
        items = _from_arrow(body)
    else:
        raise RequestError(415, f"unsupported Content-Type '{ctype}'", where="Content-Type",
                           fix=f"use {JSON}, {NPY} or {ARROW}")
    if not items:
        raise RequestError(422, "holds no sequence", where="instances", fix="send at least one")
    if len(items) > limits.max_instances:
        raise RequestError(422, f"holds {len(items)} sequences, at most {limits.max_instances} per request",
                           where="instances", fix="split them over several requests")
    k = _top_k(top, limits, "top_k")
    return [check_sequence(arr, where, limits) for where, arr in items], k
