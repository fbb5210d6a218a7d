"""Check Kubernetes manifests offline, without an API server.

Three layers, each problem naming the object and the field:

1. KubeRay objects against the ``openAPIV3Schema`` of their CRD's ``v1`` version (the CRD
   YAMLs are read from a folder the caller names; the project ships none). Unknown fields are
   errors here, as ``kubectl apply``'s strict field validation makes them.
2. The rules the operator enforces but the schema leaves out: ``submissionMode`` values,
   exactly one of ``rayClusterSpec`` / ``clusterSelector``, ``minReplicas <= replicas <=
   maxReplicas``, a ``serveConfigV2`` that Ray Serve's own ``ServeDeploySchema`` accepts, ...
3. Built-in kinds (ConfigMap, Secret, PVC, Service, ...): a small structural check, and, across
   the set, that every ConfigMap, Secret and claim a Ray pod mounts is in the set too.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from skelray.errors import ConfigError

RAY_API = "ray.io/v1"
SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
BUILTIN_API = {"ConfigMap": "v1", "Secret": "v1", "PersistentVolumeClaim": "v1", "Service": "v1",
               "Namespace": "v1", "ServiceAccount": "v1"}
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")


class ManifestError(ConfigError):
    """One or more manifests would be rejected by Kubernetes or the KubeRay operator."""


@dataclass(frozen=True)
class Problem:
    obj: str  # "RayJob/skelray-demo"
    field: str  # "spec.rayClusterSpec.workerGroupSpecs[0].minReplicas"
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.field}: {self.message}"


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(root)"


# -- 1. CRD schemas ---------------------------------------------------------------------------

def default_crd_dir() -> Path | None:
    """``$SKELRAY_KUBERAY_CRDS``, else ``../shared/reference/kuberay-crds`` beside the checkout."""
    env = os.environ.get("SKELRAY_KUBERAY_CRDS")
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "reference" / "kuberay-crds"
    return path if path.is_dir() else None


def _strict(schema: Any) -> Any:
    """Forbid fields a schema does not list (the API server's strict field validation),
    except where the schema itself says unknown fields are kept."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out \
                and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.lru_cache(maxsize=8)
def _load_crd_dir(crd_dir: str) -> dict[str, dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are ~1 MB each
    schemas: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(crd_dir).glob("*.y*ml")):
        for doc in yaml.load_all(path.read_text(), Loader=loader):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            kind = doc["spec"]["names"]["kind"]
            for version in doc["spec"].get("versions", []):
                if version.get("name") == "v1":
                    schemas[kind] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def load_crd_schemas(crd_dir: str | Path) -> dict[str, dict[str, Any]]:
    """kind -> strict ``v1`` schema, from the CRD YAMLs in ``crd_dir``."""
    path = Path(crd_dir)
    if not path.is_dir():
        raise ConfigError("is not a folder", where=f"--crds {crd_dir}",
                          fix="pass the folder of KubeRay CRD YAMLs (ray.io_rayjobs.yaml, ...)")
    schemas = _load_crd_dir(str(path.resolve()))
    missing = {"RayCluster", "RayJob", "RayService"} - set(schemas)
    if missing:
        raise ConfigError(f"holds no v1 CRD for {', '.join(sorted(missing))}", where=str(path),
                          fix="use the CRDs of KubeRay 1.x (ray.io_rayclusters.yaml, ray.io_rayjobs.yaml, "
                              "ray.io_rayservices.yaml)")
    return copy.copy(schemas)


def _schema_problems(doc: Mapping[str, Any], schema: Mapping[str, Any], obj: str) -> Iterator[Problem]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            # Name each unknown field itself rather than the object holding it.
            known = set(err.schema.get("properties", {}))
            for key in sorted(set(map(str, err.instance)) - known):
                yield Problem(obj, _path([*err.absolute_path, key]),
                              "unknown field (not in the KubeRay CRD: a typo, or a newer KubeRay's field?)")
            continue
        yield Problem(obj, _path(err.absolute_path), err.message[:300])


# -- 2. the operator's own rules ----------------------------------------------------------------

def _cluster_rules(spec: Any, where: str, obj: str) -> Iterator[Problem]:
    if not isinstance(spec, Mapping):
        yield Problem(obj, where, "must be a mapping with headGroupSpec and workerGroupSpecs")
        return
    if not isinstance(spec.get("headGroupSpec"), Mapping):
        yield Problem(obj, f"{where}.headGroupSpec", "is required (the head node's pod template)")
    groups = spec.get("workerGroupSpecs") or []
    seen: set[str] = set()
    for i, group in enumerate(groups if isinstance(groups, list) else []):
        at = f"{where}.workerGroupSpecs[{i}]"
        if not isinstance(group, Mapping):
            continue
        name = group.get("groupName")
        if name in seen:
            yield Problem(obj, f"{at}.groupName", f"{name!r} is used by another worker group")
        seen.add(name)
        lo, hi, n = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1), group.get("replicas")
        if not all(isinstance(v, int) for v in (lo, hi) + ((n,) if n is not None else ())):
            continue  # the schema reports the type
        if lo > hi:
            yield Problem(obj, f"{at}.minReplicas", f"minReplicas {lo} is above maxReplicas {hi}")
        if n is not None and not lo <= n <= hi:
            yield Problem(obj, f"{at}.replicas", f"replicas {n} is outside [minReplicas {lo}, maxReplicas {hi}]")


def _rayjob_rules(spec: Mapping[str, Any], obj: str) -> Iterator[Problem]:
    mode = spec.get("submissionMode", "K8sJobMode")
    if mode not in SUBMISSION_MODES:
        yield Problem(obj, "spec.submissionMode", f"{mode!r} is not one of {', '.join(SUBMISSION_MODES)}")
    has_spec, has_selector = spec.get("rayClusterSpec") is not None, bool(spec.get("clusterSelector"))
    if has_spec == has_selector:
        yield Problem(obj, "spec.rayClusterSpec", "give exactly one of rayClusterSpec (a cluster for this job) "
                                                  "and clusterSelector (an existing cluster)"
                      + (", not both" if has_spec else ""))
    if has_selector and spec.get("shutdownAfterJobFinishes"):
        yield Problem(obj, "spec.shutdownAfterJobFinishes",
                      "cannot shut down a cluster chosen by clusterSelector: it is not the job's own")
    if mode != "InteractiveMode" and not str(spec.get("entrypoint") or "").strip():
        yield Problem(obj, "spec.entrypoint", f"is required in {mode}")
    for key in ("ttlSecondsAfterFinished", "backoffLimit"):
        if isinstance(spec.get(key), int) and spec[key] < 0:
            yield Problem(obj, f"spec.{key}", f"must be >= 0, got {spec[key]}")
    if isinstance(spec.get("activeDeadlineSeconds"), int) and spec["activeDeadlineSeconds"] <= 0:
        yield Problem(obj, "spec.activeDeadlineSeconds", "must be > 0")
    if has_spec:
        yield from _cluster_rules(spec["rayClusterSpec"], "spec.rayClusterSpec", obj)


def serve_config_problems(text: Any, obj: str, where: str = "spec.serveConfigV2") -> Iterator[Problem]:
    """``serveConfigV2`` is a YAML string that Ray Serve's ``ServeDeploySchema`` must accept."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    if not isinstance(text, str):
        yield Problem(obj, where, "must be a YAML string (a block scalar: `serveConfigV2: |`)")
        return
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        yield Problem(obj, where, f"is not valid YAML ({str(exc).splitlines()[0]})")
        return
    if not isinstance(config, dict):
        yield Problem(obj, where, "must be a Serve config mapping with `applications:`")
        return
    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        for err in exc.errors()[:5]:
            yield Problem(obj, f"{where}.{_path(err['loc'])}", err["msg"])


def _rayservice_rules(spec: Mapping[str, Any], obj: str) -> Iterator[Problem]:
    if "serveConfigV2" not in spec:
        yield Problem(obj, "spec.serveConfigV2", "is required: without it the RayService deploys nothing")
    else:
        yield from serve_config_problems(spec["serveConfigV2"], obj)
    yield from _cluster_rules(spec.get("rayClusterConfig"), "spec.rayClusterConfig", obj)


# -- 3. built-in kinds and references -------------------------------------------------------------

def _string_map(doc: Mapping[str, Any], key: str, obj: str, *, base64_values: bool = False) -> Iterator[Problem]:
    values = doc.get(key)
    if values is None:
        return
    if not isinstance(values, Mapping):
        yield Problem(obj, key, "must be a mapping of key -> string")
        return
    for k, v in values.items():
        if not _CONFIG_KEY.match(str(k)):
            yield Problem(obj, f"{key}.{k}", "keys may hold only letters, digits, '-', '_' and '.'")
        if not isinstance(v, str):
            yield Problem(obj, f"{key}.{k}", f"must be a string, got {type(v).__name__} (quote it)")
        elif base64_values:
            try:
                base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError):
                yield Problem(obj, f"{key}.{k}", "must be base64 (or move it to stringData)")


def _builtin_rules(doc: Mapping[str, Any], obj: str) -> Iterator[Problem]:
    kind = doc.get("kind")
    if doc.get("apiVersion") != BUILTIN_API[kind]:
        yield Problem(obj, "apiVersion", f"must be {BUILTIN_API[kind]} for a {kind}")
    if kind == "ConfigMap":
        yield from _string_map(doc, "data", obj)
    elif kind == "Secret":
        yield from _string_map(doc, "data", obj, base64_values=True)
        yield from _string_map(doc, "stringData", obj)
    elif kind == "PersistentVolumeClaim":
        spec = doc.get("spec") or {}
        modes = spec.get("accessModes")
        if not modes or not isinstance(modes, list):
            yield Problem(obj, "spec.accessModes", f"needs at least one of {', '.join(ACCESS_MODES)}")
        else:
            for i, m in enumerate(modes):
                if m not in ACCESS_MODES:
                    yield Problem(obj, f"spec.accessModes[{i}]", f"{m!r} is not one of {', '.join(ACCESS_MODES)}")
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if size is None:
            yield Problem(obj, "spec.resources.requests.storage", "is required (e.g. 20Gi)")
        elif not _QUANTITY.match(str(size)):
            yield Problem(obj, "spec.resources.requests.storage", f"{size!r} is not a quantity (e.g. 20Gi)")
    elif kind == "Service":
        ports = (doc.get("spec") or {}).get("ports")
        if not ports:
            yield Problem(obj, "spec.ports", "needs at least one port")
        for i, p in enumerate(ports or []):
            if not isinstance(p, Mapping) or not isinstance(p.get("port"), int):
                yield Problem(obj, f"spec.ports[{i}].port", "must be an integer")


def _walk(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, node
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))


def references(doc: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(kind, name, field) for every ConfigMap, Secret and claim ``doc``'s pods need."""
    for path, node in _walk(doc):
        if not isinstance(node, Mapping) or node.get("optional") is True:
            continue
        last = path[-1] if path else None
        if last == "configMap" and "name" in node or last == "configMapKeyRef" and "name" in node:
            yield "ConfigMap", node["name"], _path((*path, "name"))
        elif last == "secret" and "secretName" in node:
            yield "Secret", node["secretName"], _path((*path, "secretName"))
        elif last == "secretKeyRef" and "name" in node:
            yield "Secret", node["name"], _path((*path, "name"))
        elif last == "persistentVolumeClaim" and "claimName" in node:
            yield "PersistentVolumeClaim", node["claimName"], _path((*path, "claimName"))


# -- the entry points ----------------------------------------------------------------------------

def _metadata_problems(doc: Mapping[str, Any], obj: str, kind: str) -> Iterator[Problem]:
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not name:
        yield Problem(obj, "metadata.name", "is required")
        return
    if not isinstance(name, str) or len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        yield Problem(obj, "metadata.name", f"{name!r} must be lower-case letters, digits, '-' and '.'")
    elif doc.get("apiVersion") == RAY_API and (len(name) > 63 or not _DNS1035_LABEL.match(name)):
        # The operator names Services after the object: a DNS-1035 label, at most 63 characters.
        yield Problem(obj, "metadata.name", f"{name!r} must start with a letter, hold no '.', "
                                            "and be at most 63 characters for a Ray object")
    ns = meta.get("namespace")
    if ns is not None and (not isinstance(ns, str) or len(ns) > 63 or not _DNS1035_LABEL.match(ns)):
        yield Problem(obj, "metadata.namespace", f"{ns!r} is not a valid namespace name")


def validate_objects(docs: Iterable[Any], *, schemas: Mapping[str, Mapping[str, Any]] | None = None,
                     check_refs: bool = True, external: Iterable[str] = ()) -> list[Problem]:
    """Every problem of ``docs``; empty when all pass. ``schemas`` (``load_crd_schemas``) adds
    the CRD schema check; ``external`` names objects that exist outside this set."""
    docs = list(docs)
    problems: list[Problem] = []
    present = {(d.get("kind"), (d.get("metadata") or {}).get("name")) for d in docs if isinstance(d, Mapping)}
    for i, doc in enumerate(docs):
        if not isinstance(doc, Mapping):
            problems.append(Problem(f"document {i}", "(root)", "is not a mapping"))
            continue
        kind = doc.get("kind")
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
        obj = f"{kind or '?'}/{meta.get('name') or f'document {i}'}"
        if not kind or not doc.get("apiVersion"):
            problems.append(Problem(obj, "kind" if not kind else "apiVersion", "is required"))
            continue
        problems += _metadata_problems(doc, obj, kind)
        if kind in ("RayCluster", "RayJob", "RayService"):
            if doc["apiVersion"] != RAY_API:
                problems.append(Problem(obj, "apiVersion", f"must be {RAY_API} (KubeRay 1.x)"))
            if schemas is not None:
                problems += _schema_problems(doc, schemas[kind], obj)
            spec = doc.get("spec")
            if not isinstance(spec, Mapping):
                problems.append(Problem(obj, "spec", "is required"))
            elif kind == "RayCluster":
                problems += _cluster_rules(spec, "spec", obj)
            elif kind == "RayJob":
                problems += _rayjob_rules(spec, obj)
            else:
                problems += _rayservice_rules(spec, obj)
        elif kind in BUILTIN_API:
            problems += _builtin_rules(doc, obj)
        else:
            problems.append(Problem(obj, "kind", f"{kind!r} has no check here (known: RayCluster, RayJob, "
                                                 f"RayService, {', '.join(BUILTIN_API)})"))
        if check_refs:
            for ref_kind, name, field in references(doc):
                if (ref_kind, name) not in present and name not in set(external):
                    problems.append(Problem(obj, field, f"names {ref_kind} {name!r}, which is not among "
                                                        "these manifests (mark it optional, or add it)"))
    return problems


def check_objects(docs: Iterable[Any], **kwargs: Any) -> None:
    """Raise ``ManifestError`` listing every problem of ``docs``."""
    problems = validate_objects(docs, **kwargs)
    if problems:
        raise ManifestError("; ".join(map(str, problems)), fix="correct the fields named above")
