"""The study YAML: which claims, the sweeps they need, and the sizes a study runs at.

::

  name: nw_ucla                    # the study's folder and report name
  description: ...
  base: {data: ..., model: ..., train: ..., resources: ...}   # a sweep YAML body every sweep shares
  sweeps:                          # name -> what that sweep adds to base (search:, model:, ...)
    pa: {search: {model.kwargs.pa_count: {grid: [1, 3, 5]}}}
  sizes:                           # smoke | laptop | full
    smoke: {epochs: 2, seeds: 2, width: 0.25, data: {format: synthetic, path: null}, estimate: "..."}
  claims:
    - id: pa5_gain
      section: PA count
      text: PA 5 beats PA 1
      paper: {figure: "85.5 vs 85.1", source: "HPI-GCN, Table 3", epochs: 65}
      test: {rule: better, by: 0.004, a: {sweep: pa, where: {model.kwargs.pa_count: 5}},
             b: {sweep: pa, where: {model.kwargs.pa_count: 1}}}

A claim without ``test`` is one this version cannot run: it is reported ``inconclusive``
("not run by this version"), never left out. A size's ``claims`` lists the claims it runs (all
when absent); the others are reported ``inconclusive`` with the size as the reason. Every sweep
a size needs is checked when the study loads, so a mistake is found before anything trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from skelray.config import Section, validate_or_raise
from skelray.errors import ConfigError
from skelray.sweep._tree import deep_merge
from skelray.sweep.spec import SweepSpec, load_sweep

SIZES = ("smoke", "laptop", "full")
Size = Literal["smoke", "laptop", "full"]


class Selector(Section):
    """One side of a comparison: per seed, one number from the trials of ``sweep``."""

    sweep: str  # a key of the study's sweeps
    where: dict[str, Any] = Field(default_factory=dict)  # config paths -> values picking the trials
    # None: each trial's test top-1 at its chosen checkpoint. fixed: per seed, the test top-1 of
    # the trials combined with `weights` (keyed by their value of `member_by`); builder: per
    # seed, the ensemble builder's choice among that seed's trials (chosen on validation).
    ensemble: Literal["fixed", "builder"] | None = None
    weights: dict[str, float] | None = None
    member_by: str = "data.stream"
    label: str | None = None  # how the report names it; None: from the sweep and where

    @model_validator(mode="after")
    def _weights(self) -> Selector:
        if (self.ensemble == "fixed") != (self.weights is not None):
            raise ValueError("give weights exactly when ensemble is fixed, e.g. "
                             "{ensemble: fixed, weights: {j: 2, b: 2, jm: 1, bm: 1}}")
        return self

    def name(self) -> str:
        if self.label:
            return self.label
        picked = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.where.items())
        what = f"{self.ensemble} ensemble" if self.ensemble else picked or "every config"
        return f"{self.sweep}: {what}"


class TestSpec(Section):
    """How the claim is decided, on per-seed differences a - b of test top-1 (``verdict.py``)."""

    rule: Literal["better", "equivalent", "noninferior"]
    a: Selector
    b: Selector
    by: float = Field(0.0, ge=0)  # better: the improvement claimed, as a fraction (0.004 = 0.4 points)
    within: float = Field(0.01, gt=0)  # equivalent: the largest |a - b| that counts as equal
    margin: float = Field(0.01, gt=0)  # noninferior: the largest loss a - b may show (0.01 = 1 point)


class FusionCheckSpec(Section):
    """A built-in check. ``reparam`` (claim 2, ``reparam.py``): every finished dense trial of
    ``sweeps``, fused against its training form on its test split. ``served`` (claim 6,
    ``served.py``): the ensemble builder's choice over ``sweeps``' trials, exported, served by
    Ray Serve and scored over HTTP on the test split, against its offline figure."""

    kind: Literal["reparam", "served"]
    sweeps: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_sweep_served(self) -> FusionCheckSpec:
        if self.kind == "served" and len(self.sweeps) != 1:
            raise ValueError(f"a served check builds its ensemble from one sweep's trials, got "
                             f"{len(self.sweeps)} ({', '.join(self.sweeps)}); give one, e.g. sweeps: [streams]")
        return self


class PaperSpec(Section):
    figure: str | None = None  # the paper's number(s) as printed, e.g. "85.5 vs 85.1"
    source: str  # paper and table, e.g. "HPI-GCN (Table 3, NTU-120 X-Sub)"
    epochs: int | None = Field(None, ge=1)  # the paper's schedule; fewer epochs: inconclusive


class ClaimSpec(Section):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    section: str  # the report section it belongs to
    text: str  # the claim, in words
    paper: PaperSpec | None = None
    test: TestSpec | None = None  # a comparison of two sides
    check: FusionCheckSpec | None = None  # or a built-in check; neither: not run by this version

    @model_validator(mode="after")
    def _one(self) -> ClaimSpec:
        if self.test is not None and self.check is not None:
            raise ValueError(f"claim '{self.id}' has both test: and check:; give one")
        return self

    def sweeps(self) -> list[str]:
        if self.test is not None:
            return [self.test.a.sweep, self.test.b.sweep]
        return list(self.check.sweeps) if self.check is not None else []


class SizeSpec(Section):
    epochs: int = Field(ge=1)
    seeds: int = Field(ge=1)  # training seeds per configuration: an interval needs 2 or more
    width: float = Field(1.0, gt=0, le=4)  # model.kwargs.width of every sweep
    data: dict[str, Any] = Field(default_factory=dict)  # merged onto base.data (smoke: synthetic)
    train: dict[str, Any] = Field(default_factory=dict)  # merged onto base.train
    max_concurrent: int | None = Field(None, ge=1)
    sweep: dict[str, Any] = Field(default_factory=dict)  # merged last onto every sweep (e.g. wandb)
    # sweep name -> merged last onto that sweep at this size (e.g. a sparsity schedule that fits
    # the size's epochs)
    sweeps: dict[str, dict[str, Any]] = Field(default_factory=dict)
    claims: list[str] | None = None  # the claims this size runs; None: all
    estimate: str = ""  # the stated cost of the size and how it was derived (goes in the report)


class StudySpec(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    base: dict[str, Any]
    sweeps: dict[str, dict[str, Any]]
    sizes: dict[Size, SizeSpec]
    claims: list[ClaimSpec]

    @model_validator(mode="after")
    def _references(self) -> StudySpec:
        ids = [c.id for c in self.claims]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"claim id '{dup[0]}' is used twice: give every claim its own id")
        for c in self.claims:
            for sweep in c.sweeps():
                if sweep not in self.sweeps:
                    raise ValueError(f"claim '{c.id}' uses sweep '{sweep}', which sweeps: does not define "
                                     f"(defined: {', '.join(self.sweeps) or 'none'})")
        for size, s in self.sizes.items():
            unknown = sorted(set(s.claims or ()) - set(ids))
            if unknown:
                raise ValueError(f"sizes.{size}.claims names '{unknown[0]}', which is not a claim id")
            stray = sorted(set(s.sweeps) - set(self.sweeps))
            if stray:
                raise ValueError(f"sizes.{size}.sweeps names '{stray[0]}', which sweeps: does not define "
                                 f"(defined: {', '.join(self.sweeps) or 'none'})")
        return self

    def runs(self, size: str) -> list[ClaimSpec]:
        """The claims ``size`` runs: listed by the size (all when it lists none) and testable."""
        chosen = self.sizes[size].claims
        return [c for c in self.claims if c.sweeps() and (chosen is None or c.id in chosen)]

    def sweeps_for(self, size: str) -> list[str]:
        """The sweeps the size's claims need, in the order the study defines them."""
        used = {s for c in self.runs(size) for s in c.sweeps()}
        return [name for name in self.sweeps if name in used]

    def sweep_body(self, name: str, size: str, storage: str) -> dict[str, Any]:
        """The sweep YAML body of sweep ``name`` at ``size``: base, then the sweep, then the size."""
        s = self.sizes[size]
        body = deep_merge(self.base, self.sweeps[name])
        body = deep_merge(body, {"data": s.data, "train": {**s.train, "epochs": s.epochs},
                                 "model": {"kwargs": {"width": s.width}}})
        body = deep_merge(body, s.sweep)
        body = deep_merge(body, s.sweeps.get(name, {}))
        body.update(name=name, seeds=s.seeds, storage=storage)
        if s.max_concurrent is not None:
            body["max_concurrent"] = s.max_concurrent
        return body

    def sweep_spec(self, name: str, size: str, storage: str, *, data: str | None = None,
                   check_paths: bool = True) -> SweepSpec:
        """The validated sweep; errors say which sweep of which size they come from."""
        try:
            return load_sweep(self.sweep_body(name, size, storage), {"data.path": data} if data else None,
                              check_paths=check_paths)
        except ConfigError as exc:
            inner = f" ({exc.where})" if exc.where else ""
            raise ConfigError(exc.message, where=f"{self.name}: sweeps.{name} at size {size}{inner}",
                              fix=exc.fix or "correct the study's base, sweeps or sizes section") from None


def load_study(source: str | Path | dict[str, Any], *, check_paths: bool = False) -> StudySpec:
    """Read and check a study: the YAML file, then every sweep of every size (without
    ``check_paths``, the data folder need not exist yet: it is checked when a size runs)."""
    if isinstance(source, dict):
        raw, where = source, "study"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError("no such study file", where=str(path), fix="pass a file such as studies/nw_ucla.yaml")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"is not valid YAML ({exc})", where=str(path)) from None
        where = str(path)
    if not isinstance(raw, dict):
        raise ConfigError("a study is a YAML mapping (name, base, sweeps, sizes, claims)", where=where)
    study: StudySpec = validate_or_raise(StudySpec, raw, where)
    for size in study.sizes:
        for name in study.sweeps_for(size):
            study.sweep_spec(name, size, "/tmp/skelray-study-check", check_paths=check_paths)
    return study
