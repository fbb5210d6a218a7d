"""Render a sweep as KubeRay objects: a ConfigMap holding the sweep file, and a RayJob that
starts its own Ray cluster, runs ``skelray sweep run /sweeps/sweep.yaml`` on it, and deletes
the cluster when the sweep ends.

The cluster has the same shape as ``k8s/base/raycluster.yaml``: a head with no CPUs for Ray
(it runs the driver only), one worker group (GPU or CPU) that the in-tree autoscaler sizes
between min and max, results on a PersistentVolumeClaim at ``/results``, token auth on, and
the W&B key from the optional Secret ``skelray-wandb`` (without it runs are written offline).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from skelray.errors import ConfigError

SWEEP_KEY = "sweep.yaml"
SWEEPS_DIR = "/sweeps"
RESULTS_DIR = "/results"
WANDB_SECRET = "skelray-wandb"  # kubectl create secret generic skelray-wandb --from-literal=api-key=...
RAY_VERSION = "2.60.0"


@dataclass(frozen=True)
class RenderOptions:
    image: str = "skelray:latest"
    namespace: str | None = None
    gpus: int = 0  # per worker pod; 0 gives a CPU worker group
    replicas: int = 1
    min_replicas: int = 0
    max_replicas: int = 4
    claim: str = "skelray-results"

    @classmethod
    def parse(cls, *, workers: str = "1:0:4", **kwargs: Any) -> RenderOptions:
        parts = workers.split(":")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ConfigError(f"{workers!r} is not REPLICAS:MIN:MAX", where="--workers", fix="e.g. --workers 1:0:4")
        n, lo, hi = map(int, parts)
        if not lo <= n <= hi:
            raise ConfigError(f"needs MIN <= REPLICAS <= MAX, got {workers}", where="--workers",
                              fix="e.g. --workers 1:0:4")
        return cls(replicas=n, min_replicas=lo, max_replicas=hi, **{k: v for k, v in kwargs.items() if v is not None})


def k8s_name(text: str, prefix: str = "skelray-", limit: int = 47) -> str:
    """A DNS-1035 label from a sweep name. 47 leaves room for the suffixes KubeRay appends
    (``-<5 chars>`` for the cluster, ``-head-svc`` for its Service) within 63."""
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return f"{prefix}{slug}"[:limit].rstrip("-")


def _container(name: str, opts: RenderOptions, *, cpu: str, memory: str, gpus: int = 0,
               sweeps: bool = False) -> dict[str, Any]:
    limits: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = gpus
    mounts = [{"name": "results", "mountPath": RESULTS_DIR}]
    if sweeps:
        mounts.append({"name": "sweeps", "mountPath": SWEEPS_DIR, "readOnly": True})
    return {
        "name": name,
        "image": opts.image,
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": limits},
        # optional: without the Secret the sweep still runs, with W&B offline.
        "env": [{"name": "WANDB_API_KEY",
                 "valueFrom": {"secretKeyRef": {"name": WANDB_SECRET, "key": "api-key", "optional": True}}}],
        "volumeMounts": mounts,
    }


def _volumes(opts: RenderOptions, configmap: str | None) -> list[dict[str, Any]]:
    vols: list[dict[str, Any]] = [{"name": "results", "persistentVolumeClaim": {"claimName": opts.claim}}]
    if configmap:
        vols.append({"name": "sweeps", "configMap": {"name": configmap}})
    return vols


def cluster_spec(opts: RenderOptions, *, configmap: str | None = None) -> dict[str, Any]:
    """A RayCluster spec: head (0 CPUs for Ray, driver only) plus one autoscaled worker group."""
    head = _container("ray-head", opts, cpu="2", memory="8Gi", sweeps=configmap is not None)
    head["ports"] = [{"containerPort": 6379, "name": "gcs"}, {"containerPort": 8265, "name": "dashboard"},
                     {"containerPort": 10001, "name": "client"}]
    gpu = opts.gpus > 0
    worker = _container("ray-worker", opts, cpu="8" if gpu else "2", memory="32Gi" if gpu else "8Gi",
                        gpus=opts.gpus, sweeps=configmap is not None)
    pod_extra: dict[str, Any] = {}
    if gpu:
        pod_extra["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "rayVersion": RAY_VERSION,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"idleTimeoutSeconds": 120, "upscalingMode": "Default"},
        "authOptions": {"mode": "token"},  # Ray 2.60's default; the operator makes and shares the token
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
            "template": {"spec": {"containers": [head], "volumes": _volumes(opts, configmap)}},
        },
        "workerGroupSpecs": [{
            "groupName": "gpu" if gpu else "cpu",
            "replicas": opts.replicas,
            "minReplicas": opts.min_replicas,
            "maxReplicas": opts.max_replicas,
            "rayStartParams": {},
            "template": {"spec": {"containers": [worker], "volumes": _volumes(opts, configmap), **pod_extra}},
        }],
    }


def _metadata(name: str, opts: RenderOptions, sweep: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": "skelray",
                                                     "skelray.io/sweep": k8s_name(sweep, prefix="", limit=63)}}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    return meta


def render_sweep_job(sweep_file: Path, opts: RenderOptions, *, sets: list[str] | None = None) -> list[dict[str, Any]]:
    """[ConfigMap, RayJob] for ``sweep_file``; the sweep is validated first."""
    from skelray.config.overrides import cli_overrides
    from skelray.sweep.spec import load_sweep

    if not sweep_file.is_file():
        raise ConfigError("does not exist", where=str(sweep_file), fix="pass the path of a sweep YAML")
    sets = list(sets or [])
    spec = load_sweep(sweep_file, cli_overrides(sets), check_paths=False)
    if spec.data.path and spec.data.format != "synthetic" and not spec.data.path.startswith("/") \
            and "://" not in spec.data.path:
        raise ConfigError(f"{spec.data.path!r} is relative: the pods resolve it in their own working folder",
                          where="data.path", fix=f"use an absolute path in the image or on the volume ({RESULTS_DIR}/...)")
    name = k8s_name(spec.name)
    args = ["skelray", "sweep", "run", f"{SWEEPS_DIR}/{SWEEP_KEY}", "--address", "auto"]
    # An object-store URI reaches every pod as it is; a local path becomes the shared volume.
    if not (spec.storage and "://" in spec.storage):
        args += ["--storage", f"{RESULTS_DIR}/runs"]
    for item in sets:
        args += ["--set", item]
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(f"{name}-sweep", opts, spec.name),
                 "data": {SWEEP_KEY: sweep_file.read_text()}}
    rayjob = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": _metadata(name, opts, spec.name),
        "spec": {
            "entrypoint": shlex.join(args),
            "submissionMode": "K8sJobMode",
            "shutdownAfterJobFinishes": True,  # the cluster exists for this sweep only
            "ttlSecondsAfterFinished": 600,  # keep it 10 minutes for `kubectl logs`, then delete
            # A retry would start the sweep afresh and find its folder taken; trials are
            # retried inside the sweep instead (failure.max_retries), and a stopped sweep
            # continues with `skelray sweep resume`.
            "backoffLimit": 0,
            "rayClusterSpec": cluster_spec(opts, configmap=f"{name}-sweep"),
        },
    }
    return [configmap, rayjob]


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Multi-line strings (the sweep file, a serve config) as readable block scalars.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=110)
