"""Build an ensemble from a sweep's saved validation logits, and the ENSEMBLE.json it writes.

``build_ensemble(sweep_dir, budget_params=..., budget_ms=..., max_members=...)`` reads every
usable trial's best checkpoint logits, runs greedy forward selection with replacement across
all of them (whatever their stream, sparsity or PA count), optionally refines the weights,
and scores the result on the test logits (reported, never used to choose).
``skelray export ENSEMBLE.json`` turns the file into a servable bundle.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from skelray.config import validate_or_raise
from skelray.ensemble._candidates import Candidate, load_candidates
from skelray.ensemble._select import Budget, greedy_select, refine_weights
from skelray.ensemble.combine import nll, top1, weighted_logits
from skelray.errors import ConfigError, DataError

SCHEMA_VERSION = 1
KIND = "skelray-ensemble"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnsembleMember(_Model):
    key: str  # "<run>/<trial_name>"
    trial_name: str
    checkpoint: str  # the trial's best checkpoint, relative to the experiment folder
    model: str
    stream: str
    pa_count: int | None = None
    sparsity: float | None = None
    weight: float = Field(gt=0)
    count: int = Field(1, ge=1)  # times greedy selection picked it
    params: float
    macs: float
    latency_ms: float
    val_top1: float
    test_top1: float | None = None


class Score(_Model):
    key: str | None = None  # for a single trial
    val_top1: float
    val_nll: float | None = None
    test_top1: float | None = None


class BudgetSpec(_Model):
    params: float | None = None
    latency_ms: float | None = None
    max_members: int | None = None


class EnsembleSpec(_Model):
    """What ``skelray ensemble build`` writes and ``skelray export`` reads."""

    kind: str = KIND
    schema_version: int = SCHEMA_VERSION
    experiment: str  # absolute path of the sweep folder
    budget: BudgetSpec
    members: list[EnsembleMember]
    ensemble: Score
    best_single: Score  # the sweep's best trial (by its score), whatever its size
    best_single_in_budget: Score
    refined: bool = False
    trace: list[tuple[str, float]] = Field(default_factory=list)  # (pick, val top-1) per round
    skipped: list[str] = Field(default_factory=list)  # trials left out, and why

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> EnsembleSpec:
        path = Path(path)
        if not path.is_file():
            raise DataError("no such ensemble file", where=str(path),
                            fix="write one with `skelray ensemble build`")
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"is not valid JSON ({exc.msg}, line {exc.lineno})", where=str(path)) from None
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            kind = doc.get("kind") if isinstance(doc, dict) else None
            raise DataError(f"is not a skelray ensemble file (kind is {kind!r})",
                            where=str(path), fix="pass a file written by `skelray ensemble build`")
        if int(doc.get("schema_version", 0)) > SCHEMA_VERSION:
            raise DataError(f"schema_version {doc['schema_version']} is newer than this skelray reads "
                            f"({SCHEMA_VERSION})",
                            where=f"{path}: schema_version", fix="upgrade skelray")
        return validate_or_raise(cls, doc, str(path), error=DataError,
                                 fix="rebuild it with `skelray ensemble build`")


def _single(c: Candidate) -> Score:
    return Score(key=c.key, val_top1=c.val_top1, val_nll=nll(c.val_logits, c.val_labels),
                 test_top1=c.test_top1)


def _best(cands: list[Candidate]) -> Candidate:
    """The sweep's own pick: its leaderboard's first, by the leaderboard's rule, ties included
    (``skelray.sweep.aggregate.best_first``). Candidates not read from a sweep's trials table
    have no rank: then the best validation top-1, ties to the lower validation loss as in the
    greedy selection."""
    if cands and all(c.order is not None for c in cands):
        return min(cands, key=lambda c: c.order)  # type: ignore[arg-type,return-value]
    return max(cands, key=lambda c: (c.val_top1, -nll(c.val_logits, c.val_labels)))


def build_ensemble(sweep_dir: str | Path, *, budget_params: float | None = None,
                   budget_ms: float | None = None,
                   max_members: int | None = None, rounds: int | None = None,
                   refine: bool = False, pool: Collection[str] | None = None) -> EnsembleSpec:
    """Choose members and weights on validation under the budget (see the module docstring).
    ``pool``: the trial keys (``run-0/t00001-...``) selection may choose from; None: all."""
    if budget_params is not None and budget_ms is not None:
        raise ConfigError("give one budget, not both", where="--budget-params/--budget-ms",
                          fix="bound either the total parameters or the summed latency")
    for name, value in (("--budget-params", budget_params), ("--budget-ms", budget_ms),
                        ("--max-members", max_members), ("--rounds", rounds)):
        if value is not None and value <= 0:
            raise ConfigError(f"must be positive, got {value}", where=name)
    cands, skipped = load_candidates(sweep_dir)
    if pool is not None:
        cands = [c for c in cands if c.key in pool]
    if not cands:
        why = f" ({'; '.join(skipped)})" if skipped else ""
        raise DataError(f"has no finished trial with saved logits{why}",
                        where=str(sweep_dir), fix="run the sweep to completion (`skelray sweep resume`)")
    budget = Budget(params=budget_params, latency_ms=budget_ms, max_members=max_members)
    fitting = [c for c in cands if budget.fits([c])]
    if not fitting:
        small = min(cands, key=lambda c: c.params if budget_params is not None else c.latency_ms)
        what = (f"{small.params:,.0f} parameters" if budget_params is not None
                else f"{small.latency_ms:.2f} ms")
        raise ConfigError(f"no trial fits the budget: the smallest, {small.key}, has {what}",
                          where="--budget-params" if budget_params is not None else "--budget-ms",
                          fix="raise the budget")
    sel = greedy_select(cands, budget, rounds=rounds)
    assert sel is not None  # some candidate fits, so the first round picks one
    weights = sel.weights()
    refined = False
    if refine:
        new = refine_weights(cands, weights)
        refined, weights = new != weights, new
    return _spec(sweep_dir, cands, fitting, weights, sel.counts, budget, skipped, refined=refined,
                 trace=sel.trace)


def ensemble_of(sweep_dir: str | Path, weights: dict[str, float]) -> EnsembleSpec:
    """Score a hand-picked ensemble: ``{trial: weight}``, a trial named by its key
    (``run-0/t00001-...``), its name or a unique prefix of it (``t00001``). Weights are
    normalised to sum to one."""
    cands, skipped = load_candidates(sweep_dir)
    chosen: dict[int, float] = {}
    for name, w in weights.items():
        if not w > 0:
            raise ConfigError(f"weight must be positive, got {w}", where=f"--member {name}")
        i = find_candidate(cands, name)
        chosen[i] = chosen.get(i, 0.0) + float(w)
    if not chosen:
        raise ConfigError("no members given", where="--member", fix="name at least one trial")
    total = sum(chosen.values())
    norm = {i: w / total for i, w in chosen.items()}
    return _spec(sweep_dir, cands, cands, norm, {i: 1 for i in norm}, Budget(), skipped)


def find_candidate(cands: list[Candidate], name: str) -> int:
    """The index of the trial named ``name`` (key, trial name or unique prefix of either)."""
    exact = [i for i, c in enumerate(cands) if name in (c.key, c.trial_name)]
    hits = exact or [i for i, c in enumerate(cands)
                     if c.trial_name.startswith(name) or c.key.startswith(name)]
    if len(hits) == 1:
        return hits[0]
    known = ", ".join(c.trial_name for c in cands) or "none"
    what = "matches several trials" if hits else "matches no usable trial"
    raise ConfigError(f"'{name}' {what}", where="trial", fix=f"name one of: {known}")


def _spec(sweep_dir: str | Path, cands: list[Candidate], fitting: list[Candidate], weights: dict[int, float],
          counts: dict[int, int], budget: Budget, skipped: list[str], *, refined: bool = False,
          trace: list[tuple[str, float]] | None = None) -> EnsembleSpec:
    idx = sorted(weights, key=lambda i: -weights[i])
    members = [cands[i] for i in idx]
    w = [weights[i] for i in idx]
    val = weighted_logits([c.val_logits for c in members], w)
    labels = members[0].val_labels
    test = None
    if len(members[0].test_labels):
        test = top1(weighted_logits([c.test_logits for c in members], w), members[0].test_labels)
    return EnsembleSpec(
        experiment=str(Path(sweep_dir).resolve()),
        budget=BudgetSpec(params=budget.params, latency_ms=budget.latency_ms, max_members=budget.max_members),
        members=[EnsembleMember(key=c.key, trial_name=c.trial_name, checkpoint=c.checkpoint, model=c.model,
                                stream=c.stream, pa_count=c.pa_count, sparsity=c.sparsity, weight=wi,
                                count=counts[i], params=c.params, macs=c.macs, latency_ms=c.latency_ms,
                                val_top1=c.val_top1, test_top1=c.test_top1)
                 for i, c, wi in zip(idx, members, w)],
        ensemble=Score(val_top1=top1(val, labels), val_nll=nll(val, labels), test_top1=test),
        best_single=_single(_best(cands)), best_single_in_budget=_single(_best(fitting)),
        refined=refined, trace=trace or [], skipped=skipped)
