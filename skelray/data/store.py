"""The on-disk skeleton store: one Arrow IPC file per dataset, read back memory-mapped.

A store is a folder holding ``sequences.arrow``: an Arrow IPC *file* (Feather v2,
uncompressed) with one row per sequence:

==================  ===========================  =========================================
column              type                         meaning
==================  ===========================  =========================================
``id``              string                       unique sequence id
``label``           int64                        class index
``splits``          list<string>                 names of the splits holding the sequence
``shape``           fixed_size_list<int32>[4]    ``M, T, V, C``
``keypoints``       large_list<float32>          the ``(M, T, V, C)`` array, row-major
``keypoint_score``  large_list<float32>, opt.    ``(M, T, V)``; null where a row has none
``tag.<name>``      int64 or string, nullable    subject, view, camera, ...; null = absent
==================  ===========================  =========================================

Dataset metadata (format version, layout name and definition, class names, split names in
order, tag types, source) is JSON under the schema metadata key ``skelray``, so it cannot drift
from the data. The layout's definition (``layout_def``, ``Layout.to_dict``) makes a store
self-contained: opening it makes its layout known in the process (``adopt_layout``), so a
user's own layout trains anywhere the store can be read. Stores written before it was stored
name a built-in layout, which still resolves by name.

Why Arrow IPC rather than Parquet: Parquet pages are encoded (and usually compressed), so
reading always decodes into fresh memory. An uncompressed IPC file has the exact in-memory
Arrow layout, so ``pyarrow.memory_map`` + ``ipc.open_file`` give buffers that *are* the
mapped file: a sequence's keypoints are a NumPy view into the page cache, nothing is read
until touched, and the trials Ray runs on one node share those pages instead of each
holding a copy. Selecting a split only reads the small id/label/splits/shape columns.

Writing is atomic: the file is written into a temporary folder beside the target, which is
renamed into place only when complete; an existing store is replaced only with
``overwrite=True`` and only after the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from skelray.data._types import SkeletonDataset, SkeletonSequence
from skelray.data.layouts import Layout, adopt_layout, get_layout
from skelray.errors import DataError, LayoutError

FORMAT = "skelray-store"
FORMAT_VERSION = 1
DATA_FILE = "sequences.arrow"
_META_KEY = b"skelray"
# Rows go out in record batches of at most this many floats (128 MB), so writing a large
# dataset never needs a second full copy of it in memory.
_BATCH_FLOATS = 32 * 1024 * 1024


# ----------------------------------------------------------------------------- writing

def check_target(out_dir: str | Path, *, overwrite: bool) -> Path:
    """Refuse a target we must not replace; cheap, so callers run it before reading data."""
    out = Path(out_dir)
    if out.is_file():
        raise DataError("exists and is a file, not a store folder", where=str(out), fix="pick another --out")
    if out.is_dir() and any(out.iterdir()):
        if not (out / DATA_FILE).is_file():
            # Never delete a folder we did not write, even with overwrite.
            raise DataError("exists and is not a skelray store; refusing to replace it", where=str(out),
                            fix="pick another --out or empty the folder")
        if not overwrite:
            raise DataError("a store exists here already", where=str(out),
                            fix="pass --overwrite (overwrite=True) or pick another --out")
    return out


def _tag_types(dataset: SkeletonDataset) -> dict[str, str]:
    types: dict[str, str] = {}
    for s in dataset.sequences:
        for key, value in s.tags.items():
            # bool is an int to Python but would not come back as one; refuse it with floats
            if type(value) is int or isinstance(value, np.integer):
                kind = "int"
            elif isinstance(value, str):
                kind = "str"
            else:
                raise DataError(f"tag '{key}' is {type(value).__name__}; a store keeps int or str tags",
                                where=s.id)
            if types.setdefault(key, kind) != kind:
                raise DataError(f"tag '{key}' is {kind} here but {types[key]} elsewhere", where=s.id,
                                fix="use one type per tag")
    return types


def _validate(dataset: SkeletonDataset) -> None:
    if not dataset.sequences:
        raise DataError("the dataset has no sequences; nothing to write")
    num_joints = get_layout(dataset.layout).num_joints
    ids: set[str] = set()
    for s in dataset.sequences:
        if s.id in ids:
            raise DataError("id appears twice", where=s.id, fix="make sequence ids unique")
        ids.add(s.id)
        if s.keypoints.shape[2] != num_joints:
            raise DataError(f"has {s.keypoints.shape[2]} joints, layout '{dataset.layout}' has {num_joints}",
                            where=s.id, fix="pick the layout that matches the data (--layout)")
        if s.label < 0 or (dataset.class_names is not None and s.label >= len(dataset.class_names)):
            raise DataError(f"label {s.label} is outside the {dataset.num_classes} classes", where=s.id)
    for name, members in dataset.splits.items():
        unknown = [i for i in members if i not in ids]
        if unknown:
            raise DataError(f"names {len(unknown)} id(s) not in the dataset, e.g. '{unknown[0]}'",
                            where=f"split '{name}'")
        if len(set(members)) != len(members):
            raise DataError("lists an id twice", where=f"split '{name}'")


def _schema(dataset: SkeletonDataset, tag_types: dict[str, str], with_score: bool,
            source: str | None) -> pa.Schema:
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("label", pa.int64(), nullable=False),
        pa.field("splits", pa.list_(pa.string()), nullable=False),
        pa.field("shape", pa.list_(pa.int32(), 4), nullable=False),
        pa.field("keypoints", pa.large_list(pa.float32()), nullable=False),
    ]
    if with_score:
        fields.append(pa.field("keypoint_score", pa.large_list(pa.float32())))
    fields += [pa.field(f"tag.{k}", pa.int64() if t == "int" else pa.string()) for k, t in tag_types.items()]
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "layout": dataset.layout,
        "layout_def": get_layout(dataset.layout).to_dict(),
        "class_names": dataset.class_names, "splits": list(dataset.splits), "tags": tag_types,
        "num_sequences": len(dataset), "source": source,
    }
    return pa.schema(fields, metadata={_META_KEY: json.dumps(meta).encode()})


def _flat_list(arrays: list[np.ndarray | None]) -> pa.LargeListArray:
    """One large_list<float32> array from per-row arrays (None -> null), one copy in all."""
    sizes = [0 if a is None else a.size for a in arrays]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    present = [a.ravel() for a in arrays if a is not None]
    values = np.concatenate(present) if present else np.zeros(0, np.float32)
    mask = None if all(a is not None for a in arrays) else pa.array([a is None for a in arrays])
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values.astype(np.float32, copy=False)),
                                         mask=mask)


def _batch(rows: list[SkeletonSequence], schema: pa.Schema,
           membership: dict[str, list[str]]) -> pa.RecordBatch:
    columns: dict[str, pa.Array] = {
        "id": pa.array([s.id for s in rows], pa.string()),
        "label": pa.array([s.label for s in rows], pa.int64()),
        "splits": pa.array([membership.get(s.id, []) for s in rows], pa.list_(pa.string())),
        "shape": pa.FixedSizeListArray.from_arrays(
            pa.array(np.array([s.keypoints.shape for s in rows], dtype=np.int32).ravel()), 4),
        "keypoints": _flat_list([s.keypoints for s in rows]),
    }
    if "keypoint_score" in schema.names:
        columns["keypoint_score"] = _flat_list([s.keypoint_score for s in rows])
    for name in schema.names:
        if name.startswith("tag."):
            columns[name] = pa.array([s.tags.get(name[4:]) for s in rows], schema.field(name).type)
    return pa.RecordBatch.from_arrays([columns[n] for n in schema.names], schema=schema)


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)  # put the previous store back before reporting the failure
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_store(dataset: SkeletonDataset, out_dir: str | Path, *, overwrite: bool = False,
                source: str | None = None) -> Path:
    """Write ``dataset`` as a store folder at ``out_dir``; returns the folder.

    Split lists are stored as per-row membership, so they come back in row order.
    """
    out = check_target(out_dir, overwrite=overwrite)
    _validate(dataset)
    tag_types = _tag_types(dataset)
    with_score = any(s.keypoint_score is not None for s in dataset.sequences)
    schema = _schema(dataset, tag_types, with_score, source)
    membership: dict[str, list[str]] = {}
    for name, members in dataset.splits.items():
        for i in members:
            membership.setdefault(i, []).append(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target (same file system, so the final rename is atomic); mkdir, not mkdtemp,
    # so the store gets the usual umask permissions rather than 0700.
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        with pa.OSFile(str(tmp / DATA_FILE), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            chunk: list[SkeletonSequence] = []
            floats = 0
            for s in dataset.sequences:
                chunk.append(s)
                floats += s.keypoints.size
                if floats >= _BATCH_FLOATS:
                    writer.write_batch(_batch(chunk, schema, membership))
                    chunk, floats = [], 0
            if chunk:
                writer.write_batch(_batch(chunk, schema, membership))
        with open(tmp / DATA_FILE, "rb") as fh:
            os.fsync(fh.fileno())  # the rename must not land before the data does
        check_target(out, overwrite=overwrite)  # someone may have written there meanwhile
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ----------------------------------------------------------------------------- reading

def _view(arr: pa.Array, dtype: type) -> np.ndarray:
    """Zero-copy NumPy view of a null-free primitive Arrow array.

    Same result as ``arr.to_numpy(zero_copy_only=True)``, but that call makes pyarrow import
    pandas (about half a second), which every trial that opens a store would pay.
    """
    width = np.dtype(dtype).itemsize
    data = arr.buffers()[1]
    if data is None or len(arr) == 0:  # e.g. a batch whose scores are all null
        return np.zeros(0, dtype)
    return np.frombuffer(data, dtype=dtype, count=len(arr), offset=arr.offset * width)


class _Columns:
    """The whole file's columns, shared by every selection of one opened store.

    Small columns (ids, labels, shapes, split membership, tags) are materialised once;
    keypoints stay as per-batch views into the memory map.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.source = pa.memory_map(str(path / DATA_FILE), "r")
            reader = pa.ipc.open_file(self.source)
        except (OSError, pa.ArrowInvalid) as exc:
            raise DataError(f"is not a readable skelray store ({exc})", where=str(path)) from None
        raw = (reader.schema.metadata or {}).get(_META_KEY)
        meta = json.loads(raw) if raw else {}
        if meta.get("format") != FORMAT:
            raise DataError("is not a skelray store (no skelray metadata)", where=str(path))
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"has store format version {meta.get('format_version')}, this skelray reads "
                            f"{FORMAT_VERSION}", where=str(path), fix="convert the source data again")
        self.meta = meta
        # Known by name in this process from now on: trials, transforms and models look it up.
        self._layout = adopt_layout(meta["layout_def"], source=f"{path}: layout_def") \
            if "layout_def" in meta else None
        batches = [reader.get_batch(b) for b in range(reader.num_record_batches)]
        sizes = [len(b) for b in batches]
        self.row_batch = np.repeat(np.arange(len(batches)), sizes)
        self.row_local = np.concatenate([np.arange(n) for n in sizes]) if sizes else np.zeros(0, int)
        self.ids: list[str] = [i for b in batches for i in b.column("id").to_pylist()]
        self.labels = np.concatenate([_view(b.column("label"), np.int64) for b in batches])
        self.shapes = np.concatenate([self._shape(b.column("shape")) for b in batches]).reshape(-1, 4)
        member = [set(m) for b in batches for m in b.column("splits").to_pylist()]
        self.in_split = {name: np.array([name in m for m in member], dtype=bool) for name in meta["splits"]}
        self.tags = {k: [v for b in batches for v in b.column(f"tag.{k}").to_pylist()] for k in meta["tags"]}
        # Offsets and values are zero-copy views of the mapped file; nothing is read here.
        self.kp = [self._views(b, "keypoints") for b in batches]
        self.score = None
        if "keypoint_score" in reader.schema.names:
            self.score = [self._views(b, "keypoint_score") for b in batches]

    @property
    def layout(self) -> Layout:
        if self._layout is None:  # a store written before stores kept the definition
            try:
                self._layout = get_layout(self.meta["layout"])
            except LayoutError:
                raise DataError(f"names layout '{self.meta['layout']}', which is not built in, and was written "
                                "before stores kept their layout's definition", where=str(self.path),
                                fix="convert the data again (with --layout YOUR_LAYOUT.yaml)") from None
        return self._layout

    @staticmethod
    def _shape(col: pa.FixedSizeListArray) -> np.ndarray:
        # .values, not .flatten(): flatten imports pyarrow.compute (a quarter second)
        return _view(col.values, np.int32)[col.offset * 4:(col.offset + len(col)) * 4]

    @staticmethod
    def _views(batch: pa.RecordBatch, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        col = batch.column(name)
        valid = np.ones(len(col), bool)
        if col.null_count:  # unpack the validity bitmap (is_valid() would import pyarrow.compute)
            bits = np.unpackbits(np.frombuffer(col.buffers()[0], np.uint8), bitorder="little")
            valid = bits[col.offset:col.offset + len(col)].astype(bool)
        return _view(col.offsets, np.int64), _view(col.values, np.float32), valid

    def row(self, r: int) -> SkeletonSequence:
        b, i = self.row_batch[r], self.row_local[r]
        shape = tuple(int(x) for x in self.shapes[r])
        offsets, values, _ = self.kp[b]
        kp = values[offsets[i]:offsets[i + 1]].reshape(shape)
        score = None
        if self.score is not None and self.score[b][2][i]:
            s_off, s_val, _ = self.score[b]
            score = s_val[s_off[i]:s_off[i + 1]].reshape(shape[:3])
        tags = {k: col[r] for k, col in self.tags.items() if col[r] is not None}
        return SkeletonSequence(id=self.ids[r], label=int(self.labels[r]), keypoints=kp, tags=tags,
                                keypoint_score=score)


class SkeletonStore:
    """A memory-mapped store, or a selection (split) of one. Build it with ``open_store``.

    ``store[i]`` is a ``SkeletonSequence`` whose keypoints are a read-only NumPy view of the
    mapped file (copy it before changing it in place).
    """

    def __init__(self, columns: _Columns, rows: np.ndarray, split: str | None = None) -> None:
        self._c = columns
        self._rows = rows
        self.split = split  # the split this selection was made with, if any

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> SkeletonSequence:
        n = len(self._rows)
        if not -n <= i < n:
            raise IndexError(f"sequence {i} is outside a store of {n}")
        return self._c.row(int(self._rows[i]))

    def __iter__(self) -> Iterator[SkeletonSequence]:
        return (self._c.row(int(r)) for r in self._rows)

    def __reduce__(self) -> tuple[object, tuple[str, np.ndarray, str | None]]:
        # Ray ships objects to workers by pickling: send the path and the row selection, not the
        # mapped data, so every worker maps the same file (one copy in the page cache).
        return _reopen, (str(self.path), self._rows, self.split)

    def __repr__(self) -> str:
        part = f", split={self.split!r}" if self.split else ""
        return f"SkeletonStore({str(self._c.path)!r}{part}, {len(self)} sequences, layout={self.layout!r})"

    @property
    def path(self) -> Path:
        return self._c.path

    @property
    def layout(self) -> str:
        return self._c.meta["layout"]

    @property
    def layout_spec(self) -> Layout:
        """The layout's definition (the store's own copy, or a built-in one for older stores)."""
        return self._c.layout

    @property
    def class_names(self) -> list[str] | None:
        names = self._c.meta["class_names"]
        return list(names) if names is not None else None

    @property
    def num_classes(self) -> int:
        names = self.class_names
        return len(names) if names is not None else int(self._c.labels.max(initial=-1)) + 1

    @property
    def source(self) -> str | None:
        return self._c.meta.get("source")

    @property
    def ids(self) -> list[str]:
        return [self._c.ids[r] for r in self._rows]

    @property
    def tag_types(self) -> dict[str, str]:
        """Tag name -> "int" or "str", for every tag some sequence of the store carries."""
        return dict(self._c.meta["tags"])

    def tag_values(self, name: str) -> list[int | str | None]:
        """Tag ``name`` of each sequence of this selection (None where a sequence has none)."""
        col = self._c.tags[name]
        return [col[r] for r in self._rows]

    @property
    def has_keypoint_score(self) -> bool:
        """Whether the store holds a ``keypoint_score`` column (some sequences have scores)."""
        return self._c.score is not None

    @property
    def labels(self) -> np.ndarray:
        return self._c.labels[self._rows]

    @property
    def shapes(self) -> np.ndarray:
        """``(n, 4)`` int array of ``M, T, V, C`` per sequence, without touching keypoints."""
        return self._c.shapes[self._rows]

    @property
    def lengths(self) -> np.ndarray:
        return self.shapes[:, 1]

    @property
    def split_names(self) -> list[str]:
        return list(self._c.meta["splits"])

    @property
    def splits(self) -> dict[str, list[str]]:
        """Split name -> ids of this selection in it, in row order."""
        ids = self._c.ids
        return {name: [ids[r] for r in self._rows[mask[self._rows]]]
                for name, mask in self._c.in_split.items()}

    def select(self, split: str) -> SkeletonStore:
        """The rows of ``split`` (within this selection); no keypoint is read."""
        if split not in self._c.in_split:
            raise DataError(f"no split named '{split}'", where=str(self.path),
                            fix=f"choose one of {self.split_names}")
        return SkeletonStore(self._c, self._rows[self._c.in_split[split][self._rows]], split)

    def to_dataset(self) -> SkeletonDataset:
        """This selection as an in-memory dataset (keypoints stay views of the map)."""
        return SkeletonDataset(list(self), self.layout, self.splits, self.class_names)


def _reopen(path: str, rows: np.ndarray, split: str | None) -> SkeletonStore:
    return SkeletonStore(_Columns(Path(path)), rows, split)


def open_store(path: str | Path, split: str | None = None) -> SkeletonStore:
    """Open the store at ``path`` memory-mapped; with ``split``, only that split's rows."""
    path = Path(path)
    if not (path / DATA_FILE).is_file():
        raise DataError(f"is not a skelray store (no {DATA_FILE})", where=str(path),
                        fix="create one with `skelray data convert` or write_store()")
    columns = _Columns(path)
    store = SkeletonStore(columns, np.arange(len(columns.ids)))
    return store.select(split) if split is not None else store


__all__ = ["DATA_FILE", "FORMAT", "FORMAT_VERSION", "SkeletonStore", "check_target", "open_store",
           "write_store"]
