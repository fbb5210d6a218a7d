"""Each claim's record: the claim, the paper's figure, ours (per seed, with intervals), the verdict.

``evaluate(study, size, run_dir)`` reads the study's sweeps (only reading: trial folders are
read in memory, never collected into a results store here) and decides every claim with
``verdict.decide``. Built-in checks: ``reparam`` re-runs each trial here (``reparam.py``);
``served`` reads the ``served.json`` the study runner wrote (``served.py``). A claim the size
did not run, or that this version cannot run, gets a record too, ``inconclusive`` with the
reason. ``CLAIMS_SCHEMA`` is the JSON schema of ``claims.json``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from skelray import record
from skelray.errors import ConfigError
from skelray.study.spec import ClaimSpec, Selector, StudySpec
from skelray.study.verdict import INCONCLUSIVE, decide
from skelray.sweep.aggregate import FINISHED
from skelray.sweep.results import Location, best_column, sweep_state, trial_dirs, trial_row
from skelray.sweep.stats import interval

KIND = "skelray-study-claims"
SCHEMA_VERSION = 1
TEST_TOP1 = best_column(record.TEST_TOP1)  # a trial's test top-1 at its chosen checkpoint
SEED = "config.train.seed"
SPARSITY_LEVEL = "config.model.sparsity.level"
NOT_RUN = "not run by this version"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Figure(_Model):
    """A number over seeds: mean, 95% Student-t interval (None with one seed), and each seed's."""

    label: str
    mean: float | None
    low: float | None
    high: float | None
    n: int
    per_seed: dict[str, float]  # seed -> value (claim 2's figures: trial name -> value)


class Ours(_Model):
    metric: str
    a: Figure
    b: Figure
    difference: Figure  # a - b, paired by seed (claim 2: by trial)
    epochs: int
    speed: Figure | None = None  # claim 2: training-form / fused forward time, per trial
    # a / b in deployed non-zero parameters, per seed (an ensemble counts all its members)
    params: Figure | None = None
    counted: str = "seeds"  # what a figure's n counts (claim 6: test clips, of one figure each)
    detail: str | None = None  # a line more for the report (claim 6: how it was served and scored)


class Paper(_Model):
    figure: str | None
    source: str
    epochs: int | None


class ClaimRecord(_Model):
    id: str
    section: str
    claim: str
    paper: Paper | None
    ours: Ours | None
    verdict: Literal["held", "not held", "inconclusive"]
    rule: str
    reason: str


class ClaimsFile(_Model):
    kind: Literal["skelray-study-claims"] = KIND
    schema_version: int = SCHEMA_VERSION
    study: str
    size: str
    claims: list[ClaimRecord]


CLAIMS_SCHEMA: dict[str, Any] = ClaimsFile.model_json_schema()


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every trial's row of a sweep folder, read from its trial folders (nothing written)."""
    sweep = Location.parse(str(sweep_dir))
    if not sweep.is_dir():
        return []
    state = sweep_state(sweep)
    return [trial_row(run, trial, metric=state.metric, mode=state.mode, epochs_total=None, scope=state.scope)[0]
            for run, trial in trial_dirs(sweep)]


def _matches(row: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    return all(row.get(f"config.{path}") == value for path, value in where.items())


def _seed(row: Mapping[str, Any]) -> str:
    return str(row.get(SEED))


def deployed_params(row: Mapping[str, Any], sweep_dir: Path | None = None) -> float | None:
    """A trial's deployed parameters: the non-zero ones of its inference form (a sparse model's
    masked weights do not count). A trial of a version that did not record them is counted from
    its chosen checkpoint (``sweep_dir`` given), else its parameter count stands in."""
    value = row.get(record.NONZERO_PARAMS)
    if value is None and sweep_dir is not None and row.get(SPARSITY_LEVEL) is not None and row.get("best_checkpoint"):
        value = _counted(sweep_dir / row["run"] / row["trial_name"] / row["best_checkpoint"])
    if value is None:
        value = row.get(record.PARAMS)
    return None if value is None or math.isnan(value) else float(value)


@functools.lru_cache(maxsize=256)
def _counted(checkpoint: Path) -> float:
    from skelray.models import inference_form
    from skelray.train.measure import nonzero_params
    from skelray.train.trial import model_from_checkpoint

    model, _ = model_from_checkpoint(checkpoint)
    return nonzero_params(inference_form(model))


def _total(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(sum(v for v in values if v is not None))


def side_values(sel: Selector, sweep_dir: Path, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Seed -> the selector's number (test top-1) for every seed whose trials have finished."""
    return side_figures(sel, sweep_dir, rows)[0]


def side_figures(sel: Selector, sweep_dir: Path,
                 rows: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float | None]]:
    """Seed -> the selector's test top-1, and seed -> its deployed parameters (``deployed_params``,
    summed over an ensemble's members), for every seed whose trials have finished."""
    picked = [r for r in rows if _matches(r, sel.where) and r.get("status") in FINISHED]
    by_seed: dict[str, list[dict[str, Any]]] = {}
    for r in picked:
        by_seed.setdefault(_seed(r), []).append(r)
    out: dict[str, float] = {}
    params: dict[str, float | None] = {}
    if sel.ensemble is None:
        for seed, members in by_seed.items():
            if len(members) > 1:
                raise ConfigError(f"picks {len(members)} trials of seed {seed} in sweep '{sel.sweep}'",
                                  where=f"selector {sel.name()}",
                                  fix="add the searched paths that tell them apart to where:")
            value = members[0].get(TEST_TOP1)
            if value is not None and not math.isnan(value):
                out[seed] = float(value)
                params[seed] = deployed_params(members[0], sweep_dir)
        return out, params
    from skelray.ensemble import build_ensemble, ensemble_of

    if not sweep_state(Location.parse(str(sweep_dir))).finished:
        return {}, {}  # members are chosen among a seed's trials: only once all have run
    for seed, members in by_seed.items():
        by_key = {f"{r['run']}/{r['trial_name']}": r for r in members}
        keys = {k: str(r.get(f"config.{sel.member_by}")) for k, r in by_key.items()}
        if sel.ensemble == "fixed":
            assert sel.weights is not None
            if set(keys.values()) != set(sel.weights):
                continue  # a member is missing (errored): no figure for this seed
            spec = ensemble_of(sweep_dir, {k: sel.weights[v] for k, v in keys.items()})
        else:
            spec = build_ensemble(sweep_dir, pool=set(keys))
        if spec.ensemble.test_top1 is not None:
            out[seed] = float(spec.ensemble.test_top1)
            params[seed] = _total([deployed_params(by_key[m.key], sweep_dir) if m.key in by_key else None
                                   for m in spec.members])
    return out, params


ACCURACY, DIFFERENCE = (0.0, 1.0), (-1.0, 1.0)  # the ranges a top-1 and a difference of two can take


def _figure(label: str, values: Mapping[str, float], bounds: tuple[float, float] | None = None) -> Figure:
    """Mean and 95% t interval of ``values``; the interval cut to ``bounds`` when given (with
    two or three seeds it can reach past what the number can be: past the bound the interval
    only says that the data do not narrow it there)."""
    if not values:
        return Figure(label=label, mean=None, low=None, high=None, n=0, per_seed={})
    iv = interval(list(values.values()))
    low, high = iv.low, iv.high
    if bounds is not None and low is not None and high is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Figure(label=label, mean=iv.mean, low=low, high=high, n=iv.n, per_seed=dict(values))


def _paper(c: ClaimSpec) -> Paper | None:
    return Paper(figure=c.paper.figure, source=c.paper.source, epochs=c.paper.epochs) if c.paper else None


def _inconclusive(c: ClaimSpec, reason: str, rule: str = "-") -> ClaimRecord:
    return ClaimRecord(id=c.id, section=c.section, claim=c.text, paper=_paper(c), ours=None,
                       verdict=INCONCLUSIVE, rule=rule, reason=reason)


def evaluate(study: StudySpec, size: str, run_dir: Path,
             rows: dict[str, list[dict[str, Any]]] | None = None) -> ClaimsFile:
    """Every claim's record, from what has finished in ``run_dir``'s sweeps (their trial rows
    ``rows``, by sweep name, when the caller has read them already)."""
    runs = {c.id for c in study.runs(size)}
    epochs = study.sizes[size].epochs
    if rows is None:
        rows = {name: sweep_rows(run_dir / "sweeps" / name) for name in study.sweeps_for(size)}
    out = []
    for c in study.claims:
        if not c.sweeps():
            out.append(_inconclusive(c, NOT_RUN))
            continue
        if c.id not in runs:
            out.append(_inconclusive(c, f"not run at size {size}: the size runs "
                                     f"{', '.join(sorted(runs)) or 'no claim'}; run a size that includes it"))
            continue
        if c.check is not None and c.check.kind == "served":
            out.append(_served_record(c, run_dir, epochs))
            continue
        if c.check is not None:
            out.append(_fusion_record(c, {s: (run_dir / "sweeps" / s, rows[s]) for s in c.check.sweeps}, epochs))
            continue
        t = c.test
        assert t is not None
        a, a_params = side_figures(t.a, run_dir / "sweeps" / t.a.sweep, rows[t.a.sweep])
        b, b_params = side_figures(t.b, run_dir / "sweeps" / t.b.sweep, rows[t.b.sweep])
        paired = sorted(set(a) & set(b))
        diffs = {s: a[s] - b[s] for s in paired}
        ratios = {s: pa / pb for s in paired if (pa := a_params.get(s)) is not None and (pb := b_params.get(s))}
        decision, _ = decide(t.rule, list(diffs.values()), by=t.by, within=t.within, margin=t.margin, epochs=epochs,
                             paper_epochs=c.paper.epochs if c.paper else None)
        reason = decision.reason
        if not paired:
            reason = (f"no seed has finished both sides yet ({t.a.name()}: {len(a)} seeds, "
                      f"{t.b.name()}: {len(b)}); resume the study")
        ours = Ours(metric="test top-1 (fraction), at each trial's chosen checkpoint",
                    a=_figure(t.a.name(), a, ACCURACY), b=_figure(t.b.name(), b, ACCURACY),
                    difference=_figure("a - b", diffs, DIFFERENCE), epochs=epochs,
                    params=_figure("non-zero parameters, a / b", ratios) if ratios else None)
        out.append(ClaimRecord(id=c.id, section=c.section, claim=c.text, paper=_paper(c), ours=ours,
                               verdict=decision.verdict, rule=decision.rule, reason=reason))
    return ClaimsFile(study=study.name, size=size, claims=out)


FUSION_RULE = ("fused vs training form on each finished trial's test split: not held if any trial's test "
               "top-1 differs, or the speed-up interval (training / fused forward time, 95% t over trials) "
               "is below 1; held if none differs and the interval is above 1; else inconclusive")


def _fusion_record(c: ClaimSpec, sweeps: Mapping[str, tuple[Path, list[dict[str, Any]]]], epochs: int) -> ClaimRecord:
    from skelray.study.reparam import check_trial

    cache: dict[str, object] = {}
    checks = []
    for folder, rows in sweeps.values():
        for r in rows:
            if r.get("status") in FINISHED and r.get("best_checkpoint"):
                trial = folder / r["run"] / r["trial_name"]
                found = check_trial(trial, trial / r["best_checkpoint"], cache)
                if found is not None:
                    checks.append(found)
    fused = {f.trial: f.fused_top1 for f in checks}
    trained = {f.trial: f.training_top1 for f in checks}
    ours = Ours(metric="test top-1 (fraction), fused and training form of each trial's chosen checkpoint",
                a=_figure("fused", fused, ACCURACY), b=_figure("training form", trained, ACCURACY),
                difference=_figure("fused - training", {k: fused[k] - trained[k] for k in fused}, DIFFERENCE),
                epochs=epochs,
                speed=_figure("training / fused forward time", {f.trial: f.speedup for f in checks}),
                counted="trials")
    worst = max((abs(f.fused_top1 - f.training_top1), f.trial) for f in checks) if checks else (0.0, "")
    logit = max((f.max_logit_diff for f in checks), default=0.0)
    sp = ours.speed
    assert sp is not None
    if not checks:
        verdict, reason = INCONCLUSIVE, "no finished dense trial with a test split yet; resume the study"
    elif worst[0] > 0:
        verdict, reason = "not held", f"trial {worst[1]}: fused test top-1 differs by {100 * worst[0]:.2f} points"
    elif sp.low is None or sp.high is None:
        verdict, reason = INCONCLUSIVE, "top-1 equal on the 1 trial; a speed interval needs 2 or more trials"
    else:
        span = (f"top-1 equal on all {len(checks)} trials (largest logit difference {logit:.2g}); speed-up "
                f"{sp.mean:.2f}x [{sp.low:.2f}, {sp.high:.2f}]")
        verdict = "held" if sp.low > 1 else "not held" if sp.high < 1 else INCONCLUSIVE
        reason = span
    return ClaimRecord(id=c.id, section=c.section, claim=c.text, paper=_paper(c), ours=ours, verdict=verdict,
                       rule=FUSION_RULE, reason=reason)


SERVED_RULE = ("the builder's ensemble (chosen on validation), exported and served over HTTP, on every test "
               "clip: held if each clip's top label over HTTP equals the offline bundle's and the top-1 over "
               "HTTP equals the builder's offline test top-1; not held if either differs; inconclusive if the "
               "check has not run or failed")
SERVED_FIELDS = ("ensemble", "clips", "http_top1", "offline_top1", "builder_top1", "differing", "max_prob_diff")


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _served_record(c: ClaimSpec, run_dir: Path, epochs: int) -> ClaimRecord:
    """Claim 6's record, from the ``served.json`` the study runner wrote (``served.py``)."""
    from skelray.study.served import SERVED_FILE, read_served

    doc = read_served(run_dir)
    if doc is None:
        return _inconclusive(c, f"not run yet ({SERVED_FILE} is absent): resume the study", SERVED_RULE)
    lacking = [k for k in SERVED_FIELDS if doc.get(k) is None]
    if doc.get("error") or lacking:
        why = doc.get("error") or f"{SERVED_FILE} lacks {', '.join(lacking)}"
        return _inconclusive(c, f"the served check failed: {why} (delete {SERVED_FILE} and resume the study "
                                "to run it again)", SERVED_RULE)
    name, n, differing = str(doc["ensemble"]), int(doc["clips"]), int(doc["differing"])
    http, offline, builder = float(doc["http_top1"]), float(doc["offline_top1"]), float(doc["builder_top1"])

    def one(label: str, value: float) -> Figure:
        return _figure(label, {name: value}).model_copy(update={"n": n})

    ours = Ours(metric="test top-1 (fraction) of the builder's ensemble", a=one("served over HTTP", http),
                b=one("offline (builder)", builder), difference=one("served - offline", http - builder),
                epochs=epochs, counted="clips",
                detail=(f"{n} test clips, {doc.get('per_request')} a request, up to {doc.get('concurrency')} "
                        f"requests at a time, {doc.get('graph')} graph: {doc.get('http_s')} s over HTTP "
                        f"({doc.get('wall_s')} s with choosing, exporting and starting Serve); the bundle "
                        f"offline: top-1 {_pct(offline)}; largest probability difference "
                        f"{float(doc['max_prob_diff']):.2g}"))
    figures = f"top-1 over HTTP {_pct(http)}, the builder's offline test top-1 {_pct(builder)}, {n} clips"
    verdict: Literal["held", "not held"]
    if differing:
        verdict, reason = "not held", (f"{differing} of {n} clips' top label over HTTP differs from the offline "
                                       f"bundle's ({figures})")
    elif not math.isclose(http, builder, abs_tol=1e-9):
        verdict, reason = "not held", (f"{figures}: the top-1 differs, though every clip's top label equals the "
                                       f"offline bundle's (top-1 {_pct(offline)})")
    else:
        verdict, reason = "held", f"{figures}: equal, and no clip's top label differs from the offline bundle's"
    return ClaimRecord(id=c.id, section=c.section, claim=c.text, paper=_paper(c), ours=ours, verdict=verdict,
                       rule=SERVED_RULE, reason=reason)
