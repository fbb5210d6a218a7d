"""``skelray serve BUNDLE`` (run the graph over HTTP) and ``skelray serve build BUNDLE -o FILE``.

``skelray serve BUNDLE`` is short for ``skelray serve run BUNDLE``: the group routes anything
that is not a sub-command name to ``run``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from skelray.console import make_console
from skelray.errors import ConfigError


class _RunByDefault(TyperGroup):
    """A group whose first argument, when not a sub-command, is the BUNDLE of ``run``."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_RunByDefault, no_args_is_help=True)
console = make_console()


def _args(bundle: Path, config: Path | None, **flags: Any) -> Any:
    """ServeArgs from an optional YAML/JSON file of its fields, then the flags given on top."""
    import yaml

    from skelray.serve.config import ServeArgs

    values: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            raise ConfigError("no such file", where=str(config), fix="pass a YAML file of serve settings")
        values = yaml.safe_load(config.read_text()) or {}
        if not isinstance(values, dict):
            raise ConfigError("must hold a mapping of serve settings", where=str(config),
                              fix="e.g. members: {m0-...: {replicas: 2}}, "
                                  "autoscaling: {min_replicas: 1, max_replicas: 4}")
    values.update({k: v for k, v in flags.items() if v is not None})
    return ServeArgs.parse({**values, "bundle": str(bundle)})


def _print_plan(args: Any) -> None:
    from skelray.export.manifest import read_manifest
    from skelray.serve.config import plan
    from skelray.serve.placement import plan_summary

    manifest = read_manifest(args.bundle)
    total = plan_summary(args, manifest)
    table = Table(title=f"deployments for {args.bundle} ({manifest.name}): {total['graph']} graph, "
                        f"{total['cpus']:g} CPU" + (f", {total['gpus']:g} GPU" if total["gpus"] else ""))
    for col in ("deployment", "replicas", "CPUs", "GPUs", "max batch", "batch wait (ms)"):
        table.add_column(col)
    for p in plan(args, manifest):
        o = p.options
        replicas = str(o.get("num_replicas", "auto"))
        batch = o.get("user_config") or {}
        table.add_row(p.name, replicas, str(o["ray_actor_options"].get("num_cpus", 0)),
                      str(o["ray_actor_options"].get("num_gpus", 0)), str(batch.get("max_batch_size", "-")),
                      f"{1000 * batch['batch_wait_timeout_s']:g}" if batch else "-")
    console.print(table)


_BUNDLE = typer.Argument(..., help="The bundle folder `skelray export -o` wrote.")
_CONFIG = typer.Option(None, "--config",
                       help="YAML of serve settings (skelray.serve.ServeArgs fields: per-member "
                       "replicas, autoscaling, CPUs/GPUs, batching, limits); flags override it.")
_REPLICAS = typer.Option(None, "--replicas",
                         help="Replicas of each model deployment (each member, or the fused one); default 1, "
                         "and on a Ray started here the fused graph gets one per core (up to 8).")
_BATCH = typer.Option(None, "--max-batch-size",
                      help="Clips per batched forward pass; 1: no batching (default 16).")
_WAIT = typer.Option(None, "--batch-wait-ms",
                     help="How long a partial batch waits for more clips (default 1).")
_CPUS = typer.Option(None, "--num-cpus",
                     help="CPUs per model replica (a member, or the fused one); also its torch threads "
                     "(default 1, shared out when the local node has fewer).")
_GPUS = typer.Option(None, "--num-gpus", help="GPUs per member replica (default 0).")
_GRAPH = typer.Option(None, "--graph",
                      help="fused: one batched replica runs every member (one hop per request); "
                      "per-member: a deployment per member (GPUs, members that scale apart) "
                      "(default auto: per-member when GPUs or per-member settings ask for it).")
_HEALTH = typer.Option(None, "--health-check-period-s", help="Seconds between health checks (default 10).")
_DTYPE = typer.Option(None, "--dtype",
                      help="Members' weights and inputs: float32 or bfloat16 (checked by `skelray export`; "
                      "for GPUs with bf16 units) (default float32).")


@app.command("run")
def run_command(
    bundle: Path = _BUNDLE,
    host: str = typer.Option("127.0.0.1", "--host", help="Address the HTTP proxy listens on."),
    port: int = typer.Option(8000, "--port", help="Port the HTTP proxy listens on."),
    config: Path = _CONFIG, graph: str = _GRAPH, replicas: int = _REPLICAS, max_batch_size: int = _BATCH,
    batch_wait_ms: float = _WAIT,
    num_cpus: float = _CPUS, num_gpus: float = _GPUS, health_check_period_s: float = _HEALTH,
    dtype: str = _DTYPE,
    address: str = typer.Option(None, "--address", help="A running Ray cluster (default: start one here)."),
    ingress: str = typer.Option("auto", "--ingress",
                                help="direct: --port forwards connections straight to the ingress replicas' own "
                                "HTTP servers (Serve's direct ingress; a Ray started here); proxy: through "
                                "Serve's HTTP proxy; auto: direct unless --address."),
    local_cpus: int = typer.Option(None, "--local-cpus", min=1,
                                   help="CPUs of the Ray started here (default this machine's)."),
    start_timeout_s: float = typer.Option(180.0, "--start-timeout-s", min=1,
                                          help="Give up when a deployment is not running after this long."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the bundle and print the deployments only."),
) -> None:
    """Serve BUNDLE over HTTP until Ctrl-C: POST /v1/predict, GET /v1/models, GET /healthz."""
    args = _args(bundle, config, graph=graph, replicas=replicas, max_batch_size=max_batch_size,
                 batch_wait_ms=batch_wait_ms,
                 num_cpus=num_cpus, num_gpus=num_gpus, health_check_period_s=health_check_period_s,
                 dtype=dtype)
    if dry_run:
        _print_plan(args)
        return
    from ray import serve

    from skelray.runtime import free_port, start_ray
    from skelray.serve import direct, front
    from skelray.serve.builder import deploy
    from skelray.serve.config import APP_NAME
    from skelray.serve.placement import fit_args

    mode = direct.choose(ingress, local=not address)
    if not address:  # on a cluster the port is the head node's, not this machine's
        direct.require_free(host, port)
    env = direct.environment() if mode == direct.DIRECT else None
    started = start_ray(address, num_cpus=local_cpus, env=env)  # a refused token becomes a ConfigError
    deployed = False
    try:
        args = fit_args(args, local=not address, say=console.print)
        _print_plan(args)
        # Direct ingress: --port is the front's; Serve's proxy (which it still runs) gets a free one.
        proxy_port = free_port(direct.reachable(host)) if env else port
        serve.start(http_options={"host": host, "port": proxy_port})
        deployed = True
        # Listening now, forwarding once a replica is up; the handle keeps the actor alive.
        front_actor = front.start(host, port, APP_NAME) if env else None
        deploy(args, start_timeout_s, lambda line: console.print(f"  {line}"))
        if front_actor is not None:
            ports = ", ".join(map(str, direct.ingress_ports(APP_NAME)))
            console.print(f"serving {bundle} at http://{host}:{port}/v1/predict, forwarded straight to the "
                          f"ingress replica (direct ingress; replica port(s) {ports}). Serve's proxy answers "
                          f"too, at http://{host}:{proxy_port}  (Ctrl-C stops)")
        else:
            console.print(f"serving {bundle} at http://{host}:{port}/v1/predict through Serve's proxy  "
                          "(Ctrl-C stops)")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        if deployed:
            serve.shutdown()
        if started:
            import ray

            ray.shutdown()


@app.command("build")
def build_command(
    bundle: Path = _BUNDLE,
    output: Path = typer.Option(..., "-o", "--output", help="The Serve config YAML to write."),
    bundle_path: str = typer.Option(None, "--bundle-path",
                                    help="Where the cluster's nodes find the bundle, if not this path."),
    host: str = typer.Option("0.0.0.0", "--host"), port: int = typer.Option(8000, "--port"),
    config: Path = _CONFIG, graph: str = _GRAPH, replicas: int = _REPLICAS, max_batch_size: int = _BATCH,
    batch_wait_ms: float = _WAIT,
    num_cpus: float = _CPUS, num_gpus: float = _GPUS, health_check_period_s: float = _HEALTH,
    dtype: str = _DTYPE,
) -> None:
    """Write a Serve config (import_path skelray.serve:app) for `serve deploy` or a RayService."""
    import yaml

    from skelray.serve.config import serve_config

    args = _args(bundle, config, graph=graph, replicas=replicas, max_batch_size=max_batch_size,
                 batch_wait_ms=batch_wait_ms,
                 num_cpus=num_cpus, num_gpus=num_gpus, health_check_period_s=health_check_period_s,
                 dtype=dtype)
    config = serve_config(args, host=host, port=port, bundle_path=bundle_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("# Serve config for a skelray bundle, written by `skelray serve build`.\n"
                      + yaml.safe_dump(config, sort_keys=False))
    _print_plan(args)
    console.print(f"wrote {output}; deploy it with `serve deploy {output}`, "
                  "or embed it as a RayService's serveConfigV2")
