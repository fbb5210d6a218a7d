"""Getting a trial its data: load a split set once per node and share it with every trial there.

``load_splits`` reads any supported source into train/val/test ``Split``s. Inside a Ray
cluster, ``node_splits`` asks the node's ``NodeDataCache`` actor (one per node and dataset,
created on first use) for them: the actor loads the data once, puts the arrays in the node's
object store, and every trial on that node maps them zero-copy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skelray.errors import DataError
from skelray.train.loop import Split

CACHE_NAMESPACE = "skelray"
VAL_FRACTION = 0.1


@dataclass
class DataBundle:
    """What a trial needs: the three splits and the facts that shape the model."""

    splits: dict[str, Split]
    layout: str
    num_classes: int
    in_channels: int
    class_names: list[str] = field(default_factory=list)


def _holdout(ids: list[int], labels: np.ndarray, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified split of ``ids`` into (kept, held out) with ``fraction`` of each class held out."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in np.unique(labels[ids]):
        members = [i for i in ids if labels[i] == c]
        rng.shuffle(members)
        n = int(round(fraction * len(members)))
        held += members[:n]
        kept += members[n:]
    return sorted(kept), sorted(held)


def _read_source(data: Any):
    """The whole dataset named by a data spec, as ``(sequences, splits, layout, class_names)``."""
    fmt = data.format
    if fmt == "synthetic":
        from skelray.data.synthetic import synthetic

        # Clips are generated at the sampled length; sampling then varies only the phase.
        ds = synthetic(data.num_classes, data.num_per_class, data.resolved_layout(), data.frames, data.seed)
        return ds.sequences, ds.splits, ds.layout, ds.class_names
    if fmt == "store":
        from skelray.data.store import open_store

        store = open_store(data.path)
        ds = store.to_dataset()
        return ds.sequences, ds.splits, ds.layout, ds.class_names
    from skelray.data.readers import READERS

    if fmt not in READERS:
        raise DataError(f"unknown data format '{fmt}'", where="data.format",
                        fix=f"use one of store, synthetic, {', '.join(READERS)}")
    ds = READERS[fmt](data.path, layout=data.resolved_layout())
    return ds.sequences, ds.splits, ds.layout, ds.class_names


def load_splits(data: Any) -> DataBundle:
    """Read a data spec's train, val and test splits.

    ``data.split.val`` names a split, or is null: then a stratified ``VAL_FRACTION`` of the
    training split is held out, with a fixed seed so every trial holds out the same clips and
    validation logits are comparable across trials (the ensemble builder relies on that).
    """
    sequences, named, layout, class_names = _read_source(data)
    index = {s.id: i for i, s in enumerate(sequences)}
    labels = np.array([s.label for s in sequences], dtype=np.int64)

    def ids_of(split: str | None, where: str) -> list[int]:
        if split is None:
            return []
        if split not in named:
            raise DataError(f"the dataset has no split '{split}'", where=where,
                            fix=f"choose one of {sorted(named)}")
        return sorted(index[i] for i in named[split] if i in index)

    train = ids_of(data.split.train, "data.split.train")
    val = ids_of(data.split.val, "data.split.val")
    test = ids_of(data.split.test, "data.split.test")
    if data.split.val is None:
        train, val = _holdout(train, labels, VAL_FRACTION, seed=0)
    if not train:
        raise DataError("the training split is empty", where="data.split.train")
    clips = [s.keypoints for s in sequences]

    def split(ids: list[int]) -> Split:
        return Split([clips[i] for i in ids], labels[ids])

    num_classes = len(class_names) if class_names else int(labels.max()) + 1
    return DataBundle({"train": split(train), "val": split(val), "test": split(test)}, layout,
                      num_classes, int(clips[0].shape[-1]), list(class_names or []))


def data_key(data: Any) -> str:
    """A short stable key for a data spec: trials with the same key share the node's copy.

    Frame count, stream and persons are applied per batch, so they are not part of the key.
    """
    fields = {k: v for k, v in data.model_dump().items() if k not in ("frames", "stream", "streams", "persons")}
    return hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _cache_actor_class():
    import ray

    @ray.remote(num_cpus=0)
    class NodeDataCache:
        """Holds one node's copy of a dataset in the object store; counts how often it loaded."""

        def __init__(self) -> None:
            self._refs: dict[str, list] = {}
            self.loads = 0

        def get(self, data_json: str) -> list:
            from skelray.sweep.spec import DataSpec  # noqa: PLC0415 (actor-side import)

            data = DataSpec.model_validate_json(data_json)
            key = data_key(data)
            if key not in self._refs:
                bundle = load_splits(data)
                self.loads += 1
                # Wrapped in a list so the caller receives the reference, not a copy of the data.
                self._refs[key] = [ray.put(bundle)]
            return self._refs[key]

        def stats(self) -> dict:
            return {"loads": self.loads, "datasets": len(self._refs)}

    return NodeDataCache


def cache_actor_name(node_id: str) -> str:
    return f"skelray-data-{node_id}"


def node_splits(data: Any) -> DataBundle:
    """This node's shared copy of the data (loading it if no trial here has yet)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_id = ray.get_runtime_context().get_node_id()
    actor = _cache_actor_class().options(
        name=cache_actor_name(node_id), namespace=CACHE_NAMESPACE, get_if_exists=True,
        lifetime="detached", scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote()
    (ref,) = ray.get(actor.get.remote(data.model_dump_json()))
    return ray.get(ref)


def cache_stats() -> dict[str, dict]:
    """Loads per node, from every live cache actor (for tests and the live view)."""
    import ray

    out = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        try:
            actor = ray.get_actor(cache_actor_name(node["NodeID"]), namespace=CACHE_NAMESPACE)
            out[node["NodeID"]] = ray.get(actor.stats.remote(), timeout=10)
        except (ValueError, ray.exceptions.RayError):
            continue  # no cache there yet, or its node is going away
    return out


def shutdown_caches() -> None:
    """Kill every cache actor so the objects they hold are freed once a sweep ends."""
    import ray

    for node in ray.nodes():
        try:
            ray.kill(ray.get_actor(cache_actor_name(node["NodeID"]), namespace=CACHE_NAMESPACE))
        except (ValueError, ray.exceptions.RayError):
            continue
