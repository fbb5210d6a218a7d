"""The kustomize overlays and `skelray k8s render` give manifests KubeRay and Kubernetes accept:
checked against the KubeRay v1 CRD schemas, the operator's extra rules and built-in kinds."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from skelray.cli import app
from skelray.deploy.validate import ManifestError, check_objects, validate_objects
from skelray.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
KUSTOMIZATIONS = ["base", "overlays/cpu", "overlays/gpu"]


def kustomize(path: str) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not found: it renders the kustomize overlays")
    out = subprocess.run(["kubectl", "kustomize", str(K8S / path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {path: kustomize(path) for path in KUSTOMIZATIONS}


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_kustomization_renders_valid_objects(rendered, crd_schemas_or_none, path):
    docs = rendered[path]
    assert validate_objects(docs, schemas=crd_schemas_or_none) == []
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "ConfigMap", "PersistentVolumeClaim", "RayCluster",
                                               "RayJob", "RayService"]
    cluster = by_kind(docs, "RayCluster")["spec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert cluster["enableInTreeAutoscaling"] is True and cluster["authOptions"] == {"mode": "token"}
    job = by_kind(docs, "RayJob")["spec"]
    assert (job["submissionMode"], job["shutdownAfterJobFinishes"]) == ("K8sJobMode", True)
    # The sweep the job runs is in the ConfigMap it mounts at /sweeps, and it is a valid sweep.
    assert job["entrypoint"].startswith("skelray sweep run /sweeps/sweep.yaml --address auto")
    sweep = by_kind(docs, "ConfigMap", "skelray-sweep")["data"]["sweep.yaml"]
    assert load_sweep(sweep, check_paths=False).name.startswith("k8s_")
    gpus = [c["resources"]["limits"].get("nvidia.com/gpu") for g in cluster["workerGroupSpecs"]
            for c in g["template"]["spec"]["containers"]]
    assert gpus == ([None] if path == "overlays/cpu" else [1])
    images = {c["image"] for d in docs if d["kind"].startswith("Ray") for _, c in _containers(d)}
    assert images == {"skelray:latest" if path == "base" else f"skelray:{path.rsplit('/')[-1]}"}


def _containers(doc: dict[str, Any]):
    spec = doc["spec"].get("rayClusterSpec") or doc["spec"].get("rayClusterConfig") or doc["spec"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        for c in group["template"]["spec"]["containers"]:
            yield group, c


@pytest.fixture(scope="module")
def fresh_serve_configs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve")
    run = subprocess.run([str(K8S / "serve-config.sh"), str(K8S / "bundle"), str(out)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


@pytest.mark.parametrize(("path", "config"), [("base", "base"), ("overlays/cpu", "base"),
                                              ("overlays/gpu", "overlays/gpu")])
def test_embedded_serve_config_is_a_fresh_serve_build(rendered, fresh_serve_configs, path, config):
    fresh = yaml.safe_load((fresh_serve_configs / config / "serve_config.yaml").read_text())
    committed = yaml.safe_load((K8S / config / "serve_config.yaml").read_text())
    embedded = yaml.safe_load(by_kind(rendered[path], "RayService")["spec"]["serveConfigV2"])
    assert embedded == committed == fresh, "stale Serve config: regenerate it with k8s/serve-config.sh"
    app_args = embedded["applications"][0]
    assert (app_args["import_path"], app_args["args"]["bundle"]) == ("skelray.serve:app", "/bundles/best")
    # The deployments that run models are the batched ones: the fused Ingress (CPU), or each member (GPU).
    models = [d for d in app_args["deployments"] if "user_config" in d]
    fused = [d["name"] for d in models] == ["Ingress"]
    assert fused == ("gpu" not in path)
    assert {d["ray_actor_options"].get("num_gpus", 0) for d in models} == ({0.5} if "gpu" in path else {0})


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    keys = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    for k in keys[:-1]:
        doc = doc[k]
    doc[keys[-1]] = value


def _break_serve(doc: dict[str, Any]) -> None:
    config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    config["applications"][0]["import_path"] = "skelray_serve_app"  # no module:attribute separator
    doc["spec"]["serveConfigV2"] = yaml.safe_dump(config)


BROKEN = {
    "bad submissionMode": ("RayJob", lambda d: _set(d, "spec.submissionMode", "K8sMode"),
                           "spec.submissionMode", "not one of K8sJobMode"),
    "cluster spec and selector": ("RayJob", lambda d: _set(d, "spec.clusterSelector", {"ray.io/cluster": "x"}),
                                  "spec.rayClusterSpec", "not both"),
    "min above max": ("RayCluster", lambda d: _set(d, "spec.workerGroupSpecs.0.minReplicas", 5),
                      "spec.workerGroupSpecs[0].minReplicas", "above maxReplicas 4"),
    "replicas outside range": ("RayJob", lambda d: _set(d, "spec.rayClusterSpec.workerGroupSpecs.0.replicas", 9),
                               "spec.rayClusterSpec.workerGroupSpecs[0].replicas", "outside"),
    "serveConfigV2 invalid": ("RayService", _break_serve, "spec.serveConfigV2.applications[0].import_path",
                              "invalid import path"),
    "serveConfigV2 not YAML": ("RayService", lambda d: _set(d, "spec.serveConfigV2", "applications: [unclosed"),
                               "spec.serveConfigV2", "not valid YAML"),
    "missing metadata.name": ("PersistentVolumeClaim", lambda d: d["metadata"].pop("name"),
                              "metadata.name", "is required"),
    # This and the next two are caught by the CRD schemas only.
    "unknown field (typo)": ("RayJob", lambda d: _set(d, "spec.shutdownAfterJobFinish", True),
                             "spec.shutdownAfterJobFinish", "unknown field"),
    "wrong type": ("RayCluster", lambda d: _set(d, "spec.workerGroupSpecs.0.maxReplicas", "four"),
                   "spec.workerGroupSpecs[0].maxReplicas", "is not of type 'integer'"),
    "rayStartParams not strings": ("RayCluster", lambda d: _set(d, "spec.headGroupSpec.rayStartParams.num-cpus", 0),
                                   "spec.headGroupSpec.rayStartParams.num-cpus", "is not of type 'string'"),
    "bad access mode": ("PersistentVolumeClaim", lambda d: _set(d, "spec.accessModes", ["ReadWriteAll"]),
                        "spec.accessModes[0]", "not one of ReadWriteOnce"),
    "ConfigMap value not a string": ("ConfigMap", lambda d: d.setdefault("data", {}).update(epochs=3),
                                     "data.epochs", "must be a string"),
    "dangling ConfigMap": ("RayJob", lambda d: _set(d, "spec.rayClusterSpec.headGroupSpec.template.spec.volumes.1"
                                                       ".configMap.name", "skelray-swep"),
                           "spec.rayClusterSpec.headGroupSpec.template.spec.volumes[1].configMap.name",
                           "not among these manifests"),
}


SCHEMA_CASES = {"unknown field (typo)", "wrong type", "rayStartParams not strings"}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_manifest_fails_naming_the_field(rendered, crd_schemas_or_none, case):
    if case in SCHEMA_CASES and crd_schemas_or_none is None:
        pytest.skip("needs the KubeRay CRDs at ../shared/reference/kuberay-crds (or SKELRAY_KUBERAY_CRDS)")
    crd_schemas = crd_schemas_or_none
    kind, breaker, field, text = BROKEN[case]
    docs = copy.deepcopy(rendered["overlays/gpu"])
    target = next(d for d in docs if d["kind"] == kind)
    breaker(target)
    problems = validate_objects(docs, schemas=crd_schemas)
    assert any(p.field == field and text in p.message for p in problems), [str(p) for p in problems]
    with pytest.raises(ManifestError, match=field.replace("[", r"\[").replace("]", r"\]")):
        check_objects(docs, schemas=crd_schemas)


def test_crd_schemas_check_ray_objects(crd_schemas, rendered):
    # Skipped, with its reason, where ../shared is absent; everything else runs without it.
    assert {"RayCluster", "RayJob", "RayService"} <= set(crd_schemas)
    job = copy.deepcopy(by_kind(rendered["base"], "RayJob"))
    job["spec"]["backoffLimit"] = "0"
    assert [str(p) for p in validate_objects([job], schemas=crd_schemas, check_refs=False)] == [
        "RayJob/skelray-sweep: spec.backoffLimit: '0' is not of type 'integer'"]
    assert validate_objects([job], check_refs=False) == []  # the rules alone do not see it


def test_wandb_secret_example_is_valid_and_holds_no_key():
    [secret] = yaml.safe_load_all((K8S / "wandb-secret.example.yaml").read_text())
    assert validate_objects([secret]) == []
    assert secret["stringData"]["api-key"].startswith("<")


runner = CliRunner()


@pytest.mark.parametrize(("flags", "group", "gpus"), [([], "cpu", None),
                                                      (["--gpus", "1", "--workers", "2:1:3"], "gpu", 1)])
def test_render_prints_a_configmap_and_a_valid_rayjob(crd_schemas_or_none, flags, group, gpus):
    out = runner.invoke(app, ["k8s", "render", str(REPO / "sweeps" / "demo.yaml"), "--image", "reg/skelray:1",
                              "--namespace", "ml", *flags])
    assert out.exit_code == 0, out.output
    configmap, rayjob = yaml.safe_load_all(out.stdout)
    # The PVC comes with the kustomize base, not with every rendered job.
    assert validate_objects([configmap, rayjob], schemas=crd_schemas_or_none, external=["skelray-results"]) == []
    assert configmap["data"]["sweep.yaml"] == (REPO / "sweeps" / "demo.yaml").read_text()
    assert {configmap["metadata"]["namespace"], rayjob["metadata"]["namespace"]} == {"ml"}
    spec = rayjob["spec"]
    assert spec["entrypoint"] == "skelray sweep run /sweeps/sweep.yaml --address auto --storage /results/runs"
    [worker] = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert worker["groupName"] == group
    assert worker["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu") == gpus
    assert worker["template"]["spec"]["containers"][0]["image"] == "reg/skelray:1"


def test_render_refuses_a_bad_sweep_and_validate_cli_reports_fields(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {format: synthetic}\nmodel: {name: no_such_model}\n")
    out = runner.invoke(app, ["k8s", "render", str(bad)])
    assert out.exit_code != 0 and "model.name" in str(out.exception)
    broken = tmp_path / "job.yaml"
    job = yaml.safe_load_all(runner.invoke(app, ["k8s", "render", str(REPO / "sweeps" / "demo.yaml")]).stdout)
    docs = list(job)
    docs[1]["spec"]["submissionMode"] = "Batch"
    broken.write_text(yaml.safe_dump_all(docs))
    out = runner.invoke(app, ["k8s", "validate", str(broken), "--external", "skelray-results"])
    assert out.exit_code == 1 and "spec.submissionMode: 'Batch' is not one of" in out.output
