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

from skelray.config import DataSpec
from skelray.config.trial import FoldSpec
from skelray.data.layouts import get_layout
from skelray.errors import DataError
from skelray.train.loop import Split

CACHE_NAMESPACE = "skelray"
VAL_FRACTION = 0.1  # the share of the training clips a hold-out aims at
# A hold-out of whole tag values never takes more than this share of the training clips: where
# every value holds more (one or two training views), ``auto`` keeps recordings together instead.
MAX_HOLDOUT_FRACTION = 0.25
HOLDOUT_SEED = 0  # fixed, so every trial of a sweep validates on the same clips


@dataclass
class DataBundle:
    """What a trial needs: the three splits and the facts that shape the model."""

    splits: dict[str, Split]
    layout: str
    num_classes: int
    in_channels: int
    class_names: list[str] = field(default_factory=list)
    holdout: str = ""  # how the validation clips were chosen, in words (recorded in trial.json)
    # The layout's definition (Layout.to_dict): the trial makes it known in its own process
    # (adopt_layout) rather than looking the name up, so a user's own layout trains anywhere.
    layout_def: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Holdout:
    """Training clips split into those kept for training and those that validate, and the rule
    that chose them in words (what ``sweep validate`` prints and the trials table records)."""

    kept: list[int]
    held: list[int]
    rule: str


VIEW_TAGS = ("view", "camera")


def _tag(seq, key: str) -> str:
    return str(seq.tags.get(key))


def _natural(value: Any) -> tuple:
    """Sort key: numbers in numeric order (subject 2 before 10), then text."""
    parts = value if isinstance(value, tuple) else (value,)
    return tuple((0, int(p), "") if p.lstrip("-").isdigit() else (1, 0, p) for p in parts)


def _common_tags(sequences: list, ids: list[int]) -> list[str]:
    """Tags that every clip in ``ids`` carries."""
    if not ids:
        return []
    common = set(sequences[ids[0]].tags)
    for i in ids:
        common &= set(sequences[i].tags)
    return sorted(common)


def _plural(keys: list[str]) -> str:
    if len(keys) > 1:
        return f"{'/'.join(keys)} groups"
    return f"{keys[0]}es" if keys[0].endswith("s") else f"{keys[0]}s"


def differing_tags(sequences: list, train: list[int], test: list[int]) -> list[str]:
    """The tags by which the test split differs from train: tags on every training and test
    clip whose training values and test values have none in common, with at least two values in
    training (a tag with one is the split's own name, nothing to hold out by). Fewest training
    values first: a subject tag comes before a per-clip id that is also disjoint."""
    if not train or not test:
        return []
    found = []
    for key in _common_tags(sequences, train + test):
        in_train = {_tag(sequences[i], key) for i in train}
        if len(in_train) >= 2 and not in_train & {_tag(sequences[i], key) for i in test}:
            found.append((len(in_train), key))
    return [key for _, key in sorted(found)]


def holdout_groups(sequences: list, ids: list[int], group_by: str | list[str]) -> dict[int, tuple]:
    """The hold-out group of each clip in ``ids``: clips of one group are held out together.

    ``"auto"`` here is the recording rule (what ``plan_holdout``'s auto falls back to): when the
    clips carry a view or camera tag, clips with the same label and the same value of every
    other tag are one recording seen from several cameras, and form one group (holding out one
    view of a recording while training on another would let validation reward recognising a
    performance it has already seen). Without such tags, or with ``"clip"``, every clip is its
    own group. A list of tag names groups by the values of those tags (whole subjects for
    ``[subject]``, every class of a subject together); a tag missing from a clip is an error.
    """
    if group_by == "clip":
        return {i: (i,) for i in ids}
    if group_by == "auto":
        tags = sorted({k for i in ids for k in sequences[i].tags})
        if not any(t in VIEW_TAGS for t in tags):
            return {i: (i,) for i in ids}
        keys = [t for t in tags if t not in VIEW_TAGS]
        return {i: (sequences[i].label, *(_tag(sequences[i], k) for k in keys)) for i in ids}
    keys = list(group_by)
    present = sorted({k for i in ids for k in sequences[i].tags})
    for k in keys:
        if any(k not in sequences[i].tags for i in ids):
            raise DataError(f"tag '{k}' is not on every training clip", where="data.split.holdout_group",
                            fix=f"group by tags the clips carry ({', '.join(present) or 'none'}), "
                                "or use auto or clip")
    return {i: tuple(_tag(sequences[i], k) for k in keys) for i in ids}


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


def _whole_values(sequences: list, ids: list[int], keys: list[str], fraction: float,
                  seed: int) -> tuple[list[int], list[int], str] | None:
    """Hold out whole values of ``keys`` (all classes of a subject at once): values are taken in
    an order shuffled with ``seed``, skipping any that would bring the held-out clips above
    ``MAX_HOLDOUT_FRACTION`` of ``ids``, until at least ``fraction`` of them are held out.
    Returns (kept, held, what was held in words), or None when no value fits under the cap."""
    groups = holdout_groups(sequences, ids, keys)
    by_value: dict[tuple, list[int]] = {}
    for i in ids:
        by_value.setdefault(groups[i], []).append(i)
    values = sorted(by_value, key=_natural)
    n = len(ids)
    target, cap = max(1, round(fraction * n)), MAX_HOLDOUT_FRACTION * n
    chosen, taken = [], 0
    for j in np.random.default_rng(seed).permutation(len(values)):
        if taken >= target:
            break
        size = len(by_value[values[j]])
        if taken + size <= cap:
            chosen.append(values[j])
            taken += size
    if not chosen:
        return None
    held = sorted(i for v in chosen for i in by_value[v])
    kept = sorted(set(ids) - set(held))
    shown = sorted(chosen, key=_natural)
    names = ", ".join("/".join(v) for v in shown) if len(shown) <= 8 else f"{len(shown)} of them"
    what = (f"{len(chosen)} of {len(values)} training {_plural(keys)} ({names}), {len(held)} clips "
            f"({100 * len(held) / n:.0f}% of the training split)")
    return kept, held, what


def plan_holdout(sequences: list, train: list[int], test: list[int], group_by: str | list[str], *,
                 fraction: float = VAL_FRACTION, seed: int = HOLDOUT_SEED) -> Holdout:
    """The validation clips carved from ``train`` when ``data.split.val`` is null.

    - ``"auto"`` mirrors the test protocol. It looks for a tag by which the test split differs
      from train (``differing_tags``: subject for a cross-subject protocol, view or camera for
      a cross-view one, setup, performer, ...) and holds out whole values of it: whole
      subjects, every class of each. Values are taken in a seeded random order, skipping any
      that would make the hold-out more than a quarter (``MAX_HOLDOUT_FRACTION``) of the
      training clips, until at least a tenth (``VAL_FRACTION``) is held out. When no value fits
      under that quarter (NW-UCLA's cross-view protocol trains on two views, each half the
      clips), or there is no test split or no such tag, it falls back to the recording rule of
      ``holdout_groups``: a tenth of each class, the views of one recording kept together.
    - A list of tags (``[subject]``) holds out whole values of those tags, the same way; when
      no value fits under the quarter it is a DataError.
    - ``"clip"``: a tenth of each class, clip by clip.
    """
    labels = np.array([s.label for s in sequences], dtype=np.int64)
    share = f"{100 * fraction:.0f}% of each class"
    if group_by == "clip":
        kept, held = _holdout(train, labels, fraction, seed)
        return Holdout(kept, held, f"clip by clip (holdout_group: clip), {share}: {len(held)} clips")
    if group_by != "auto":
        keys = list(group_by)
        got = _whole_values(sequences, train, keys, fraction, seed)
        if got is None:
            raise DataError(f"every training value of {', '.join(keys)} holds more than "
                            f"{100 * MAX_HOLDOUT_FRACTION:.0f}% of the training clips, so no whole one can "
                            "be held out for validation", where="data.split.holdout_group",
                            fix="use auto (it keeps the views of a recording together instead) or clip, "
                                "or group by a tag with more values")
        kept, held, what = got
        return Holdout(kept, held, f"whole {_plural(keys)} (holdout_group: [{', '.join(keys)}]): {what}")
    why = "no test split to mirror" if not test else "no tag tells the test split apart from train"
    infeasible = []
    for key in differing_tags(sequences, train, test):
        values = len({_tag(sequences[i], key) for i in train})
        if values == len(train):
            continue  # one clip per value (a clip id): holding out whole values mirrors nothing
        got = _whole_values(sequences, train, [key], fraction, seed)
        if got is not None:
            kept, held, what = got
            return Holdout(kept, held, f"whole {_plural([key])} (the test split differs from train by "
                                       f"{key}): {what}")
        infeasible.append(f"the test split differs from train by {key}, but each of the {values} training "
                          f"{_plural([key])} holds over {100 * MAX_HOLDOUT_FRACTION:.0f}% of the training clips")
    if infeasible:
        why = infeasible[0]
    groups = holdout_groups(sequences, train, "auto")
    kept, held = _holdout(train, labels, fraction, seed, groups=groups)
    views = sorted({k for i in train for k in sequences[i].tags if k in VIEW_TAGS})
    rule = f"the {'/'.join(views)}s of one recording together" if views else "clip by clip"
    return Holdout(kept, held, f"{rule}, {share} ({why}): {len(held)} clips")


def fold_values(sequences: list, train: list[int], by: str, folds: int,
                seed: int = HOLDOUT_SEED) -> list[list[str]]:
    """The training split's values of tag ``by`` partitioned into ``folds`` folds: values in an
    order shuffled with ``seed``, each to the fold with the fewest clips so far (ties: the lower
    fold). DataErrors at ``data.split.val`` when ``by`` is not on every training clip or there
    are fewer values than folds."""
    present = _common_tags(sequences, train)
    if by not in present:
        raise DataError(f"k-fold by '{by}': not a tag of every training clip", where="data.split.val",
                        fix=f"set by to one of {', '.join(present) or '(the clips carry no tags)'}, "
                            "or use val: null for one hold-out")
    sizes: dict[str, int] = {}
    for i in train:
        key = _tag(sequences[i], by)
        sizes[key] = sizes.get(key, 0) + 1
    values = sorted(sizes, key=_natural)
    if folds > len(values):
        raise DataError(f"{folds} folds by {by}, but the training split has only {len(values)} "
                        f"{_plural([by])}", where="data.split.val",
                        fix=f"use folds: {len(values)} or fewer, or group by a tag with more values")
    out: list[list[str]] = [[] for _ in range(folds)]
    load = [0] * folds
    for j in np.random.default_rng(seed).permutation(len(values)):
        k = int(np.argmin(load))
        out[k].append(values[j])
        load[k] += sizes[values[j]]
    return [sorted(f, key=_natural) for f in out]


def plan_fold(sequences: list, train: list[int], spec: FoldSpec, fold: int | None) -> Holdout:
    """Fold ``fold`` of ``data.split.val: {folds: K, by: TAG}``: validate on that fold's values of
    ``by`` (``fold_values``), train on the rest."""
    k = 0 if fold is None else fold
    if not 0 <= k < spec.folds:
        raise DataError(f"fold {k}, but data.split.val has {spec.folds} folds", where="data.split.fold",
                        fix=f"use a fold from 0 to {spec.folds - 1} (a sweep runs every fold itself)")
    values = set(fold_values(sequences, train, spec.by, spec.folds)[k])
    held = [i for i in train if _tag(sequences[i], spec.by) in values]
    kept = [i for i in train if _tag(sequences[i], spec.by) not in values]
    total = len({_tag(sequences[i], spec.by) for i in train})
    shown = sorted(values, key=_natural)
    names = ", ".join(shown) if len(shown) <= 8 else f"{len(shown)} of them"
    return Holdout(kept, held, f"fold {k} of {spec.folds} by {spec.by}: {len(values)} of {total} training "
                               f"{_plural([spec.by])} ({names}), {len(held)} clips "
                               f"({100 * len(held) / len(train):.0f}% of the training split)")


def _read_source(data: DataSpec):
    """The whole dataset named by a data spec, as ``(sequences, splits, layout, class_names)``."""
    fmt = data.format
    if fmt == "synthetic":
        from skelray.data.synthetic import synthetic

        # Clips are generated at the sampled length; sampling then varies only the phase.
        ds = synthetic(data.num_classes, data.num_per_class, data.resolved_layout(), data.frames, data.seed,
                       subjects=data.subjects, subject_effect=data.subject_effect)
        return ds.sequences, ds.splits, ds.layout, ds.class_names
    if fmt == "store":
        from skelray.data.store import open_store

        store = open_store(data.path)
        if data.layout is not None and get_layout(data.layout) != store.layout_spec:
            raise DataError(f"the store holds layout '{store.layout}', data.layout says '{data.layout}'",
                            where="data.layout", fix="remove data.layout (a store knows its layout), or "
                                                     "convert the data again with that layout")
        ds = store.to_dataset()
        return ds.sequences, ds.splits, ds.layout, ds.class_names
    from skelray.data.readers import READERS

    if fmt not in READERS:
        raise DataError(f"unknown data format '{fmt}'", where="data.format",
                        fix=f"use one of store, synthetic, {', '.join(READERS)}")
    ds = READERS[fmt](data.path, layout=data.resolved_layout())
    return ds.sequences, ds.splits, ds.layout, ds.class_names


def _choose(data: DataSpec, sequences: list,
            named: dict[str, list[str]]) -> tuple[list[int], Holdout, list[int]]:
    """Indices of the train, validation and test clips, and the rule that chose validation's."""
    index = {s.id: i for i, s in enumerate(sequences)}

    def ids_of(split: str | None, where: str) -> list[int]:
        if split is None:
            return []
        if split not in named:
            raise DataError(f"the dataset has no split '{split}'", where=where,
                            fix=f"choose one of {sorted(named)}")
        return sorted(index[i] for i in named[split] if i in index)

    sp = data.split
    train = ids_of(sp.train, "data.split.train")
    test = ids_of(sp.test, "data.split.test")
    if sp.fold is not None and not isinstance(sp.val, FoldSpec):
        raise DataError(f"fold {sp.fold} is set, but data.split.val is not k-fold", where="data.split.fold",
                        fix="remove data.split.fold, or set data.split.val: {folds: K, by: TAG}")
    if isinstance(sp.val, FoldSpec):
        plan = plan_fold(sequences, train, sp.val, sp.fold)
    elif sp.val is None:
        plan = plan_holdout(sequences, train, test, sp.holdout_group)
    else:
        val = ids_of(sp.val, "data.split.val")
        plan = Holdout(train, val, f"the dataset's '{sp.val}' split: {len(val)} clips")
    if not plan.kept:
        raise DataError("the training split is empty", where="data.split.train")
    return plan.kept, plan, test


def load_splits(data: DataSpec) -> DataBundle:
    """Read a data spec's train, val and test splits.

    ``data.split.val`` names a split; or is null: then about ``VAL_FRACTION`` of the training
    split is held out by ``plan_holdout`` (by default mirroring the test protocol: whole
    subjects for a cross-subject test split); or is ``{folds: K, by: TAG}``: fold
    ``data.split.fold`` of a K-fold split of the training split's TAG values validates
    (``plan_fold``). The seed is fixed, so every trial holds out the same clips and validation
    logits are comparable across trials (the ensemble builder relies on that). The bundle's
    ``holdout`` says in words which rule chose the validation clips.
    """
    sequences, named, layout, class_names = _read_source(data)
    labels = np.array([s.label for s in sequences], dtype=np.int64)
    train, plan, test = _choose(data, sequences, named)
    clips = [s.keypoints for s in sequences]

    def split(ids: list[int]) -> Split:
        return Split([clips[i] for i in ids], labels[ids], [sequences[i].id for i in ids])

    num_classes = len(class_names) if class_names else int(labels.max()) + 1
    return DataBundle({"train": split(train), "val": split(plan.held), "test": split(test)}, layout,
                      num_classes, int(clips[0].shape[-1]), list(class_names or []), plan.rule,
                      get_layout(layout).to_dict())


def describe_validation(data: DataSpec) -> list[str]:
    """How a data spec's validation clips are chosen, in words, read from the data itself: one
    line, or one per fold for ``data.split.val: {folds: K, ...}`` (``skelray sweep validate``).
    DataErrors are those ``load_splits`` would raise."""
    sequences, named, _, _ = _read_source(data)
    if not isinstance(data.split.val, FoldSpec):
        return [_choose(data, sequences, named)[1].rule]
    return [_choose(data.model_copy(update={"split": data.split.model_copy(update={"fold": k})}),
                    sequences, named)[1].rule for k in range(data.split.val.folds)]


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
