"""The cloud launcher config, the image and the local cluster script agree with the pinned
versions and with what Ray accepts (offline: nothing is launched here)."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parents[2]
LOCAL_SH = REPO / "cluster" / "local.sh"


def _pinned_torch() -> str:
    [line] = [x for x in (REPO / "requirements.lock").read_text().splitlines() if x.startswith("torch==")]
    return line.split("==")[1]


def test_aws_launcher_config_is_accepted_by_ray():
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    config = yaml.safe_load((REPO / "cluster" / "aws.yaml").read_text())
    validate_config(fillout_defaults(copy.deepcopy(config)))  # Ray's own schema and rules
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert {"cpu_worker", "gpu_worker"} <= set(types)
    for name, node in types.items():
        assert node.get("min_workers", 0) <= node.get("max_workers", config["max_workers"]), name
    assert config["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-py311")
    setup = " ".join(config["setup_commands"])
    assert f'"torch=={_pinned_torch()}"' in setup and "requirements.lock" in setup
    assert all("RAY_AUTH_MODE=token" in " ".join(config[k]) for k in ("head_start_ray_commands",
                                                                         "worker_start_ray_commands"))


def test_dockerfile_matches_the_pinned_ray_python_and_torch():
    text = (REPO / "k8s" / "Dockerfile").read_text()
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert re.search(rf"^ARG RAY_TAG={re.escape(ray.__version__)}-{py}$", text, re.MULTILINE)
    assert "FROM rayproject/ray:${RAY_TAG}" in text
    assert f'"torch=={_pinned_torch()}"' in text


def _local(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LOCAL_SH), *args], capture_output=True, text=True, timeout=30)


def test_local_sh_parses_and_explains_its_commands():
    assert subprocess.run(["bash", "-n", str(LOCAL_SH)], capture_output=True).returncode == 0
    usage = _local("--help")
    assert usage.returncode == 0 and all(w in usage.stdout for w in ("up [--workers N]", "status", "down"))
    bad = _local("up", "--worker-gpu", "1")
    assert bad.returncode == 2 and "unknown option --worker-gpu" in bad.stderr
    long_dir = _local("status", "--dir", "/tmp/" + "x" * 40)
    assert long_dir.returncode == 2 and "too long for Ray's socket paths" in long_dir.stderr


@pytest.mark.parametrize("command", ["status", "down"])
def test_local_sh_without_a_cluster(tmp_path, command):
    d = Path("/tmp") / f"skr-none-{tmp_path.name[-8:]}"
    out = _local(command, "--dir", str(d))
    if command == "status":
        assert out.returncode == 2 and f"no cluster in {d}" in out.stderr
    else:
        assert out.returncode == 0 and f"no processes of a cluster in {d}" in out.stdout
