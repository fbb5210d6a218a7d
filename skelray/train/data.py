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

import numpy as np

from skelray.config import DataSpec
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


VIEW_TAGS = ("view", "camera")


def holdout_groups(sequences: list, ids: list[int], group_by: str | list[str]) -> dict[int, tuple]:
    """The hold-out group of each clip in ``ids``: clips of one group are held out together.

    ``"auto"``: when the clips carry a view or camera tag, clips with the same label and the same
    value of every other tag are one recording seen from several cameras, and form one group
    (holding out one view of a recording while training on another would let validation
    reward recognising a performance it has already seen). Without such tags, or with
    ``"clip"``, every clip is its own group. A list of tag names groups by those tags (and the
    label): ``[subject]`` holds out whole subjects' clips of a class.
    """
    if group_by == "clip":
        return {i: (i,) for i in ids}
    if group_by == "auto":
        tags = sorted({k for i in ids for k in sequences[i].tags})
        if not any(t in VIEW_TAGS for t in tags):
            return {i: (i,) for i in ids}
        keys = [t for t in tags if t not in VIEW_TAGS]
    else:
        keys = list(group_by)
        present = sorted({k for i in ids for k in sequences[i].tags})
        for k in keys:
            if any(k not in sequences[i].tags for i in ids):
                raise DataError(f"tag '{k}' is not on every training clip", where="data.split.holdout_group",
                                fix=f"group by tags the clips carry ({', '.join(present) or 'none'}), "
                                    "or use auto or clip")
    return {i: (sequences[i].label, *(str(sequences[i].tags.get(k)) for k in keys)) for i in ids}


def _holdout(ids: list[int], labels: np.ndarray, fraction: float, seed: int,
             groups: dict[int, tuple] | None = None) -> tuple[list[int], list[int]]:
    """Stratified split of ``ids`` into (kept, held out): about ``fraction`` of each class held
    out, whole groups at a time (``groups``: clip -> group key; by default each clip alone)."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in np.unique(labels[ids]):
        members = [i for i in ids if labels[i] == c]
        by_group: dict[tuple, list[int]] = {}
        for i in members:
            by_group.setdefault(groups[i] if groups else (i,), []).append(i)
        order = list(by_group.values())
        rng.shuffle(order)
        n, taken = int(round(fraction * len(members))), 0
        for group in order:
            # Take whole groups until the class's share is reached (the last may overshoot it).
            if taken < n:
                held += group
                taken += len(group)
            else:
                kept += group
    return sorted(kept), sorted(held)


def _read_source(data: DataSpec):
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


def load_splits(data: DataSpec) -> DataBundle:
    """Read a data spec's train, val and test splits.

    ``data.split.val`` names a split, or is null: then a stratified ``VAL_FRACTION`` of the
    training split is held out, with a fixed seed so every trial holds out the same clips and
    validation logits are comparable across trials (the ensemble builder relies on that).
    ``data.split.holdout_group`` keeps clips of one recording together (``holdout_groups``).
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
        groups = holdout_groups(sequences, train, data.split.holdout_group)
        train, val = _holdout(train, labels, VAL_FRACTION, seed=0, groups=groups)
    if not train:
        raise DataError("the training split is empty", where="data.split.train")
    clips = [s.keypoints for s in sequences]

    def split(ids: list[int]) -> Split:
        return Split([clips[i] for i in ids], labels[ids], [sequences[i].id for i in ids])

    num_classes = len(class_names) if class_names else int(labels.max()) + 1
    return DataBundle({"train": split(train), "val": split(val), "test": split(test)}, layout,
                      num_classes, int(clips[0].shape[-1]), list(class_names or []))


def data_key(data: DataSpec) -> str:
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


def node_splits(data: DataSpec) -> DataBundle:
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
