"""The Serve application's settings, the deployments they give, and the Serve config file.

Two graphs serve a bundle (``graph``). ``fused``: the HTTP ingress replica holds every member,
and dynamically batched clips of concurrent requests go through preprocessing, one forward per
member and the weighted sum right there, so a request crosses one hop (proxy -> Ingress).
``per-member``: Ingress -> Preprocess -> one deployment per member -> Ensemble, for members
that need GPUs or must scale apart. ``auto`` (the default) picks ``per-member`` when GPUs or
per-member settings ask for it, ``fused`` otherwise.

``ServeArgs`` is what ``serve run skelray.serve:app bundle=... max_batch_size=8`` passes (every
value a string there; pydantic turns them into numbers), what ``skelray serve`` builds from its
flags, and what ``skelray serve build`` embeds in the config as the application's ``args``.
``plan(args, manifest)`` turns it into one option set per deployment: the app builder applies
them with ``.options(...)`` and the config writer lists them, so both always agree.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from skelray.config import validate_or_raise
from skelray.errors import ConfigError
from skelray.export.manifest import SERVE_DTYPES, Manifest

IMPORT_PATH = "skelray.serve:app"
APP_NAME = "skelray"
INGRESS, PREPROCESS, ENSEMBLE = "Ingress", "Preprocess", "Ensemble"
# The three routing deployments parse JSON and stack arrays: a tenth of a core each is plenty,
# and leaves whole cores to the members, which do the arithmetic.
FRONTEND_CPUS = 0.1
FUSED, PER_MEMBER = "fused", "per-member"
GraphName = Literal["auto", "fused", "per-member"]


def _check_autoscaling(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    from ray.serve.config import AutoscalingConfig

    AutoscalingConfig.model_validate(value)  # Serve's own rules, checked before any deploy
    return value


class MemberOptions(BaseModel):
    """Per-member overrides of the defaults in ``ServeArgs`` (keyed by member name)."""

    model_config = ConfigDict(extra="forbid")

    replicas: int | None = Field(None, ge=1)
    autoscaling: dict[str, Any] | None = None
    num_cpus: float | None = Field(None, ge=0)
    num_gpus: float | None = Field(None, ge=0)
    max_batch_size: int | None = Field(None, ge=1)
    batch_wait_ms: float | None = Field(None, ge=0)

    @field_validator("autoscaling")
    @classmethod
    def _autoscaling(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_autoscaling(v)


class ServeArgs(BaseModel):
    """Everything the application builder accepts. Defaults suit one machine."""

    model_config = ConfigDict(extra="forbid")

    bundle: str  # the bundle folder, as a path every replica's node can read
    graph: GraphName = "auto"  # fused: one batched replica holds every member; per-member: see above
    replicas: int = Field(1, ge=1)  # replicas per member (fused: of the one fused deployment)
    autoscaling: dict[str, Any] | None = None  # Serve autoscaling_config for every member
    num_cpus: float = Field(1.0, ge=0)  # CPUs per member (or fused) replica; its torch threads
    num_gpus: float = Field(0.0, ge=0)  # GPUs per member replica; a replica with one runs on CUDA
    max_batch_size: int = Field(16, ge=1)  # @serve.batch: clips per forward pass; 1 turns batching off
    # @serve.batch: how long a partial batch waits for more. Short, because under load clips queue
    # up while the previous batch runs anyway; a lone request pays this wait in full.
    batch_wait_ms: float = Field(1.0, ge=0)
    members: dict[str, MemberOptions] = Field(default_factory=dict)  # per-member overrides by name
    frontend_replicas: int = Field(1, ge=1)  # per-member graph: replicas of Ingress, Preprocess, Ensemble
    frontend_cpus: float = Field(FRONTEND_CPUS, ge=0)
    health_check_period_s: float = Field(10.0, gt=0)
    health_check_timeout_s: float = Field(30.0, gt=0)
    max_body_mb: float = Field(16.0, gt=0)  # larger request bodies get 413
    max_instances: int = Field(256, ge=1)  # sequences per request
    max_frames: int = Field(10_000, ge=1)  # frames per sequence, before resampling
    max_persons: int | None = Field(None, ge=1)  # persons per sequence; None = the bundle's
    top_k: int = Field(5, ge=1)  # labels returned per sequence unless the request asks otherwise
    verify_weights: bool = True  # check each weights file's sha256 when a replica loads it
    # Members' weights and inputs: float32, or bfloat16 (half the memory and faster on GPUs
    # with bf16 units), which `skelray export` checks against the training form by default.
    dtype: str = "float32"

    @field_validator("autoscaling")
    @classmethod
    def _autoscaling(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_autoscaling(v)

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        if v not in SERVE_DTYPES:
            raise ValueError(f"unknown serving dtype '{v}'; use one of {', '.join(SERVE_DTYPES)}")
        return v

    @classmethod
    def parse(cls, args: dict[str, Any] | ServeArgs) -> ServeArgs:
        """Validate builder args; a bad one raises ``ConfigError`` naming it."""
        if isinstance(args, ServeArgs):
            return args
        args = dict(args)
        if "bundle" not in args:
            raise ConfigError("required key is missing", where="serve args: bundle",
                              fix="pass bundle=PATH (the folder `skelray export` wrote)")
        return validate_or_raise(cls, args, "serve args", fix="see skelray.serve.config.ServeArgs")

    def resolved_graph(self) -> str:
        """``fused`` or ``per-member``: what ``auto`` means for these args."""
        if self.graph != "auto":
            return self.graph
        return PER_MEMBER if self.num_gpus > 0 or self.members else FUSED

    def builder_args(self) -> dict[str, Any]:
        """The args as the config file carries them: only what differs from the defaults."""
        return self.model_dump(mode="json", exclude_defaults=True) | {"bundle": self.bundle}


@dataclass
class DeploymentPlan:
    name: str
    options: dict[str, Any]  # keyword arguments of Deployment.options(...), also Serve config keys


def _replicas(replicas: int, autoscaling: dict[str, Any] | None) -> dict[str, Any]:
    # Serve refuses num_replicas next to autoscaling_config.
    return {"autoscaling_config": autoscaling} if autoscaling else {"num_replicas": replicas}


def _batching(batch: int, wait_ms: float) -> dict[str, Any]:
    return {
        # A replica must admit a full batch (twice: one running, one filling) to batch at all.
        "max_ongoing_requests": max(4, 2 * batch),
        "user_config": {"max_batch_size": batch, "batch_wait_timeout_s": wait_ms / 1000.0},
    }


def _actor(cpus: float, gpus: float) -> dict[str, Any]:
    return {"num_cpus": cpus, **({"num_gpus": gpus} if gpus else {})}


def plan(args: ServeArgs, manifest: Manifest) -> list[DeploymentPlan]:
    """One option set per deployment. Fused: Ingress only. Per-member: Ingress, Preprocess,
    Ensemble, then one per member."""
    unknown = sorted(set(args.members) - {m.name for m in manifest.members})
    if unknown:
        raise ConfigError(f"no member named {', '.join(unknown)} in the bundle", where="serve args: members",
                          fix=f"use one of {', '.join(m.name for m in manifest.members)}")
    health = {"health_check_period_s": args.health_check_period_s,
              "health_check_timeout_s": args.health_check_timeout_s}
    if args.resolved_graph() == FUSED:
        if args.members:
            raise ConfigError("per-member settings need the per-member graph", where="serve args: members",
                              fix="drop graph: fused (or pass --graph per-member), or drop the members settings")
        batching = _batching(args.max_batch_size, args.batch_wait_ms)
        # Requests wait in the replica's batcher, not in the proxy: admit a few batches' worth.
        batching["max_ongoing_requests"] = max(batching["max_ongoing_requests"], 4 * args.max_batch_size)
        return [DeploymentPlan(INGRESS, {**_replicas(args.replicas, args.autoscaling),
                                         "ray_actor_options": _actor(args.num_cpus, args.num_gpus),
                                         **batching, **health})]
    front = {"num_replicas": args.frontend_replicas, "ray_actor_options": {"num_cpus": args.frontend_cpus},
             # Routing deployments only await other deployments: let them hold many requests.
             "max_ongoing_requests": 256, **health}
    out = [DeploymentPlan(INGRESS, dict(front)), DeploymentPlan(PREPROCESS, dict(front)),
           DeploymentPlan(ENSEMBLE, dict(front))]
    for m in manifest.members:
        o = args.members.get(m.name, MemberOptions())
        batch = o.max_batch_size or args.max_batch_size
        wait_ms = args.batch_wait_ms if o.batch_wait_ms is None else o.batch_wait_ms
        cpus = args.num_cpus if o.num_cpus is None else o.num_cpus
        gpus = args.num_gpus if o.num_gpus is None else o.num_gpus
        out.append(DeploymentPlan(m.name, {
            **_replicas(o.replicas or args.replicas, o.autoscaling or args.autoscaling),
            "ray_actor_options": _actor(cpus, gpus), **_batching(batch, wait_ms), **health,
        }))
    return out


def serve_config(args: ServeArgs, *, host: str = "0.0.0.0", port: int = 8000, name: str = APP_NAME,
                 route_prefix: str = "/", bundle_path: str | None = None) -> dict[str, Any]:
    """A Serve config (``serve deploy`` / a RayService's ``serveConfigV2``) for the bundle.

    ``bundle_path`` replaces the bundle's path in the app's args: where the cluster's nodes see
    the bundle (a mounted volume), when that differs from where it is read here."""
    from ray.serve.schema import ServeDeploySchema

    from skelray.export.manifest import read_manifest

    manifest = read_manifest(args.bundle)
    # Deep copies: shared dicts would come out of yaml.safe_dump as anchors and aliases.
    deployments = [{"name": p.name, **copy.deepcopy(p.options)} for p in plan(args, manifest)]
    app_args = args.builder_args() | {"bundle": bundle_path or str(Path(args.bundle).resolve())}
    config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": port},
        "applications": [{"name": name, "route_prefix": route_prefix, "import_path": IMPORT_PATH,
                          "args": app_args, "deployments": deployments}],
    }
    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as exc:  # would be a bug here, not a user error; say where anyway
        raise ConfigError(f"the generated Serve config is invalid: {exc.errors()[0]['msg']}",
                          where=".".join(str(p) for p in exc.errors()[0]["loc"])) from None
    return config

