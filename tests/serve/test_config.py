"""Serve settings, the deployment plan, the Serve config file and the CLI, without a cluster."""

from __future__ import annotations

import pytest
import yaml
from ray.serve import Application
from ray.serve.schema import ServeDeploySchema
from typer.testing import CliRunner

from skelray.cli import app as cli
from skelray.errors import ConfigError
from skelray.export import BundleError, read_manifest
from skelray.serve import ServeArgs, app, plan, serve_config


def test_args_from_serve_run_strings_are_typed(bundle):
    # `serve run skelray.serve:app bundle=... max_batch_size=8` passes every value as a string
    args = ServeArgs.parse({"bundle": str(bundle), "max_batch_size": "8", "batch_wait_ms": "2.5",
                            "num_cpus": "0.5"})
    assert (args.max_batch_size, args.batch_wait_ms, args.num_cpus) == (8, 2.5, 0.5)
    with pytest.raises(ConfigError, match="serve args: max_batch_size"):
        ServeArgs.parse({"bundle": str(bundle), "max_batch_size": "many"})
    with pytest.raises(ConfigError, match="serve args: bundle.*pass bundle=PATH"):
        ServeArgs.parse({})
    with pytest.raises(ConfigError, match="serve args: replica"):
        ServeArgs.parse({"bundle": str(bundle), "replica": 2})


def test_plan_has_one_deployment_per_member_with_batching_and_resources(bundle):
    manifest = read_manifest(bundle)
    args = ServeArgs.parse({"bundle": str(bundle), "max_batch_size": 4, "batch_wait_ms": 2, "num_cpus": 0.5,
                            "members": {manifest.members[1].name: {"replicas": 3, "num_gpus": 1}}})
    plans = {p.name: p.options for p in plan(args, manifest)}
    assert list(plans)[:3] == ["Ingress", "Preprocess", "Ensemble"]
    assert set(plans) - {"Ingress", "Preprocess", "Ensemble"} == {m.name for m in manifest.members}
    first, second = (plans[m.name] for m in manifest.members)
    assert first["user_config"] == {"max_batch_size": 4, "batch_wait_timeout_s": 0.002}
    assert first["ray_actor_options"] == {"num_cpus": 0.5} and first["num_replicas"] == 1
    assert second["num_replicas"] == 3 and second["ray_actor_options"]["num_gpus"] == 1
    assert first["max_ongoing_requests"] >= 4  # a replica must admit a whole batch


def test_the_default_graph_is_fused_unless_gpus_or_member_settings_ask_for_per_member(bundle):
    manifest = read_manifest(bundle)
    fused = plan(ServeArgs.parse({"bundle": str(bundle), "num_cpus": 0.5, "max_batch_size": 8}), manifest)
    assert [p.name for p in fused] == ["Ingress"]
    (ingress,) = fused
    assert ingress.options["ray_actor_options"] == {"num_cpus": 0.5}
    assert ingress.options["user_config"] == {"max_batch_size": 8, "batch_wait_timeout_s": 0.001}
    assert ingress.options["max_ongoing_requests"] >= 2 * 8  # admits a batch filling and one running
    names = {m.name for m in manifest.members}
    for extra in ({"num_gpus": 1}, {"members": {manifest.members[0].name: {"replicas": 2}}},
                  {"graph": "per-member"}):
        assert names < {p.name for p in plan(ServeArgs.parse({"bundle": str(bundle), **extra}), manifest)}
    assert [p.name for p in plan(ServeArgs.parse({"bundle": str(bundle), "graph": "fused", "num_gpus": 1}),
                                 manifest)] == ["Ingress"]
    with pytest.raises(ConfigError, match="serve args: members.*per-member graph"):
        plan(ServeArgs.parse({"bundle": str(bundle), "graph": "fused",
                              "members": {manifest.members[0].name: {"replicas": 2}}}), manifest)
    with pytest.raises(ConfigError, match="serve args: graph"):
        ServeArgs.parse({"bundle": str(bundle), "graph": "sideways"})


def test_autoscaling_replaces_replica_counts_and_is_checked(bundle):
    auto = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8}
    args = ServeArgs.parse({"bundle": str(bundle), "autoscaling": auto})
    member = plan(args, read_manifest(bundle))[-1].options
    assert member["autoscaling_config"] == auto and "num_replicas" not in member
    with pytest.raises(ConfigError, match="serve args: autoscaling"):
        ServeArgs.parse({"bundle": str(bundle), "autoscaling": {"min_replicas": 5, "max_replicas": 1}})


def test_unknown_member_override_is_named(bundle):
    args = ServeArgs.parse({"bundle": str(bundle), "members": {"m9-nope": {"replicas": 2}}})
    with pytest.raises(ConfigError, match="no member named m9-nope.*use one of m0-"):
        plan(args, read_manifest(bundle))


def test_app_builder_builds_an_application_and_refuses_bad_bundles(bundle, tmp_path):
    assert isinstance(app({"bundle": str(bundle)}), Application)
    with pytest.raises(BundleError, match="has no manifest.json"):
        app({"bundle": str(tmp_path)})


def test_serve_build_writes_a_config_serve_accepts(bundle, tmp_path):
    out = tmp_path / "serve_config.yaml"
    result = CliRunner().invoke(cli, ["serve", "build", str(bundle), "-o", str(out), "--max-batch-size", "8",
                                      "--bundle-path", "/models/demo"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(out.read_text())
    ServeDeploySchema.model_validate(config)
    (application,) = config["applications"]
    assert application["import_path"] == "skelray.serve:app"
    assert application["args"] == {"bundle": "/models/demo", "max_batch_size": 8}
    names = [d["name"] for d in application["deployments"]]
    assert names == [p.name for p in plan(ServeArgs.parse({"bundle": str(bundle)}), read_manifest(bundle))]
    batched = [d for d in application["deployments"] if "user_config" in d]
    assert batched and all(d["user_config"]["max_batch_size"] == 8 for d in batched)


def test_serve_bundle_is_short_for_serve_run(bundle):
    result = CliRunner().invoke(cli, ["serve", str(bundle), "--dry-run", "--replicas", "2"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "fused graph" in result.output and "Ingress" in result.output
    result = CliRunner().invoke(cli, ["serve", str(bundle), "--dry-run", "--graph", "per-member"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for m in read_manifest(bundle).members:
        assert m.name in result.output
    result = CliRunner().invoke(cli, ["serve", "/no/such/bundle", "--dry-run"])
    assert isinstance(result.exception, BundleError) and "is not a bundle folder" in str(result.exception)


def test_serve_config_validates_with_defaults(bundle):
    config = serve_config(ServeArgs.parse({"bundle": str(bundle)}), port=9000)
    assert config["http_options"]["port"] == 9000
    assert ServeDeploySchema.model_validate(config).applications[0].import_path == "skelray.serve:app"


def test_a_settings_file_sets_per_member_replicas_autoscaling_and_gpus(bundle, tmp_path):
    manifest = read_manifest(bundle)
    first, second = (m.name for m in manifest.members)
    settings = tmp_path / "serve.yaml"
    settings.write_text(yaml.safe_dump({
        "num_cpus": 2, "max_batch_size": 4,
        "members": {first: {"autoscaling": {"min_replicas": 1, "max_replicas": 3,
                                            "target_ongoing_requests": 4}},
                    second: {"replicas": 2, "num_gpus": 0.5}},
    }))
    out = tmp_path / "serve_config.yaml"
    result = CliRunner().invoke(cli,
                                ["serve", "build", str(bundle), "--config", str(settings), "--max-batch-size",
                                      "8", "-o", str(out)])
    assert result.exit_code == 0, result.output
    deployments = {d["name"]: d for d in yaml.safe_load(out.read_text())["applications"][0]["deployments"]}
    ServeDeploySchema.model_validate(yaml.safe_load(out.read_text()))
    assert deployments[first]["autoscaling_config"]["max_replicas"] == 3
    assert "num_replicas" not in deployments[first]
    assert deployments[second]["num_replicas"] == 2
    assert deployments[second]["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 0.5}
    assert deployments[first]["user_config"]["max_batch_size"] == 8  # the flag overrides the file
    settings.write_text("- not a mapping\n")
    result = CliRunner().invoke(cli,
                                ["serve", "build", str(bundle), "--config", str(settings), "-o", str(out)])
    assert isinstance(result.exception, ConfigError) and "mapping of serve settings" in str(result.exception)
