"""Does a serve plan fit the cluster? Checked before anything is deployed, because Ray Serve
waits forever for a replica no node can hold and says nothing unless asked.

``fit_to_node`` shares the embedded local Ray's CPUs among the member replicas when the plan
asks for more than the node has (each replica's torch threads follow its CPUs, see
``replica.replica_device``); ``check_fits`` refuses a plan an existing cluster cannot place,
naming the deployment, what it asks, what the largest node has, and the flag that fixes it.
``fit_args`` picks one of the two for the Ray this process is connected to (``skelray serve``
and the study's served check both call it).
``wait_until_running`` reports each deployment's state while the application starts, and ends
with a ``ServeStartError`` naming the deployment and Ray's reason when one never gets there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skelray.errors import ConfigError, SkelrayError
from skelray.export.manifest import Manifest, read_manifest
from skelray.serve.config import FUSED, DeploymentPlan, ServeArgs, plan


class ServeStartError(SkelrayError):
    """The application did not reach RUNNING: a deployment failed, or is still not up."""


# Below this a replica's share of a core is too thin to serve anything in time.
MIN_SHARE = 0.05
# The fused graph on a Ray started here runs one replica per core up to this many (each holds
# every member); beyond it the replicas get more CPUs, hence torch threads, each.
MAX_LOCAL_REPLICAS = 8
# Settings that, when given, say how the fused replicas should be laid out: they are kept.
_LAYOUT = {"replicas", "autoscaling", "num_cpus", "num_gpus"}


@dataclass(frozen=True)
class Ask:
    """What one deployment needs to start: ``replicas`` x (``cpus``, ``gpus``)."""

    deployment: str
    replicas: int
    cpus: float
    gpus: float
    member: bool  # its CPUs come from --num-cpus (a member, or the fused replica)


@dataclass(frozen=True)
class Node:
    cpus: float
    gpus: float


def asks(plans: list[DeploymentPlan], member_names: set[str]) -> list[Ask]:
    out = []
    for p in plans:
        o = p.options
        auto = o.get("autoscaling_config") or {}
        # Autoscaling starts at initial_replicas (or min_replicas); at least one must fit.
        replicas = o.get("num_replicas") or auto.get("initial_replicas") or auto.get("min_replicas") or 1
        actor = o.get("ray_actor_options", {})
        out.append(Ask(p.name, max(1, int(replicas)), float(actor.get("num_cpus", 1)),
                       float(actor.get("num_gpus", 0)), p.name in member_names or len(plans) == 1))
    return out


def cluster_nodes() -> list[Node]:
    """The alive nodes of the Ray this process is connected to, with their total CPUs and GPUs."""
    import ray

    return [Node(float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
            for n in ray.nodes() if n.get("Alive")]


def _describe(a: Ask) -> str:
    return f"{a.cpus:g} CPU" + (f" and {a.gpus:g} GPU" if a.gpus else "")


def _breakdown(wanted: list[Ask]) -> str:
    return ", ".join(f"{a.deployment} {a.replicas * a.cpus:g}" for a in wanted)


def _share(nodes_cpus: float, wanted: list[Ask]) -> float:
    """CPUs per member replica that fit ``nodes_cpus`` beside the routing deployments."""
    fixed = sum(a.replicas * a.cpus for a in wanted if not a.member)
    replicas = sum(a.replicas for a in wanted if a.member)
    return math.floor(100 * (nodes_cpus - fixed) / max(1, replicas)) / 100


def check_fits(plans: list[DeploymentPlan], manifest: Manifest, nodes: list[Node]) -> None:
    """Raise ``ConfigError`` unless every replica of the plan can be placed on ``nodes``
    (first-fit, largest first, on the nodes' total resources)."""
    if not nodes:
        raise ConfigError("the Ray cluster has no alive node", where="--address",
                          fix="start the cluster's nodes, or drop --address to serve on this machine")
    wanted = asks(plans, {m.name for m in manifest.members})
    big_cpu = max(n.cpus for n in nodes)
    big_gpu = max(n.gpus for n in nodes)
    for a in wanted:
        if not any(n.cpus >= a.cpus and n.gpus >= a.gpus for n in nodes):
            flag = "--num-gpus" if a.gpus > big_gpu else "--num-cpus"
            limit = big_gpu if a.gpus > big_gpu else big_cpu
            raise ConfigError(f"deployment {a.deployment} asks {_describe(a)} per replica; the largest node has "
                              f"{big_cpu:g} CPU and {big_gpu:g} GPU, so it would never start", where=flag,
                              fix=f"pass {flag} {limit:g} or less, or add a larger node to the cluster")
    free = [[n.cpus, n.gpus] for n in nodes]
    for a in sorted(wanted, key=lambda a: (a.gpus, a.cpus), reverse=True):
        for _ in range(a.replicas):
            node = next((f for f in free if f[0] >= a.cpus - 1e-9 and f[1] >= a.gpus - 1e-9), None)
            if node is None:
                total = sum(w.replicas * w.cpus for w in wanted)
                have = sum(n.cpus for n in nodes)
                share = _share(have, wanted)
                fix = (f"pass --num-cpus {share:g} (CPUs per member replica) or fewer --replicas"
                       if share >= MIN_SHARE else "serve fewer replicas, or add nodes to the cluster")
                raise ConfigError(
                    f"deployment {a.deployment} ({a.replicas} x {_describe(a)}) does not fit beside the rest "
                    f"of the plan: it asks {total:g} CPU in all ({_breakdown(wanted)}), the cluster has "
                    f"{have:g} on {len(nodes)} node(s), the largest {big_cpu:g}", where="--num-cpus", fix=fix)
            node[0] -= a.cpus
            node[1] -= a.gpus


def spread_fused(args: ServeArgs, node: Node) -> tuple[ServeArgs, str | None]:
    """The fused graph laid out over the local node's cores when the args leave it open: one
    replica per whole CPU (up to ``MAX_LOCAL_REPLICAS``, then more CPUs each), one torch thread
    per CPU. Measured on 2 cores (bench_serve.py): two replicas of one thread answer 1.3-1.5x the
    requests/s of one at concurrency 8-64, where a second torch thread in one replica does not
    speed up a one-clip forward. The sentence says what was chosen (None when nothing changed)."""
    cpus = int(node.cpus)
    if args.resolved_graph() != FUSED or _LAYOUT & args.model_fields_set or cpus < 2:
        return args, None
    replicas = min(cpus, MAX_LOCAL_REPLICAS)
    each = cpus // replicas
    spread = args.model_copy(update={"replicas": replicas, "num_cpus": float(each)})
    return spread, (f"this node has {node.cpus:g} CPU: {replicas} fused replicas of {each} CPU and {each} torch "
                    f"thread(s) each, every one holding all the members (--replicas and --num-cpus set them)")


def fit_to_node(args: ServeArgs, manifest: Manifest, node: Node) -> tuple[ServeArgs, str | None]:
    """The args fitted to the one local node, and a sentence saying what was chosen (None when
    nothing changed): the fused graph spread over its cores (``spread_fused``) when the args
    leave the layout open, the member replicas' CPUs shared out when the plan asks for more than
    the node has. Raises ``ConfigError`` (via ``check_fits``) when no sharing can make it fit."""
    spread, note = spread_fused(args, node)
    if note:
        check_fits(plan(spread, manifest), manifest, [node])
        return spread, note
    plans = plan(args, manifest)
    wanted = asks(plans, {m.name for m in manifest.members})
    total = sum(a.replicas * a.cpus for a in wanted)
    overridden = any(o.num_cpus is not None for o in args.members.values())
    if total <= node.cpus + 1e-9 or overridden:
        check_fits(plans, manifest, [node])
        return args, None
    share = _share(node.cpus, wanted)
    if share < MIN_SHARE:
        check_fits(plans, manifest, [node])  # raises, naming the deployment and the flag
    fitted = args.model_copy(update={"num_cpus": share})
    check_fits(plan(fitted, manifest), manifest, [node])
    replicas = sum(a.replicas for a in wanted if a.member)
    return fitted, (f"this node has {node.cpus:g} CPU and the plan asked for {total:g}: each of the "
                    f"{replicas} model replica(s) gets {share:g} CPU and {max(1, int(share))} torch "
                    f"thread(s) (--num-cpus sets it)")


def fit_args(args: ServeArgs, *, local: bool, say: Callable[[str], None]) -> ServeArgs:
    """Args that fit the Ray this process is connected to: shared out on the embedded local
    node (``local``, one node; ``say`` tells how), refused with a ConfigError on an existing
    cluster they do not fit. Called before deploying: Serve would wait forever."""
    manifest = read_manifest(args.bundle)
    nodes = cluster_nodes()
    if local and len(nodes) == 1:
        fitted, note = fit_to_node(args, manifest, nodes[0])
        if note:
            say(note)
        return fitted
    check_fits(plan(args, manifest), manifest, nodes)
    return args


def plan_summary(args: ServeArgs, manifest: Manifest) -> dict[str, Any]:
    """Totals for the plan table's caption: graph, CPUs and GPUs asked."""
    wanted = asks(plan(args, manifest), {m.name for m in manifest.members})
    return {"graph": args.resolved_graph(), "cpus": sum(a.replicas * a.cpus for a in wanted),
            "gpus": sum(a.replicas * a.gpus for a in wanted)}


def wait_until_running(app_name: str, timeout_s: float, report: Callable[[str], None], *,
                       poll_s: float = 0.5) -> None:
    """Poll ``serve.status()`` until ``app_name`` is RUNNING, calling ``report`` with each
    deployment's state whenever it changes. Raises ``ServeStartError`` naming the deployment
    and Serve's message when it fails, or is still not running after ``timeout_s``."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    seen: dict[str, str] = {}
    while True:
        status = serve.status().applications.get(app_name)
        deployments = status.deployments if status else {}
        for name, d in deployments.items():
            replicas = ", ".join(f"{n} {str(getattr(s, 'value', s)).lower()}"
                                 for s, n in d.replica_states.items() if n)
            line = f"{d.status.value}" + (f" ({replicas})" if replicas else "")
            if seen.get(name) != line:
                seen[name] = line
                report(f"{name}: {line}")
        state = status.status.value if status else "NOT_STARTED"
        if state == "RUNNING":
            return
        failed = state in ("DEPLOY_FAILED", "UNHEALTHY")
        if failed or time.monotonic() > deadline:
            stuck = [(n, d) for n, d in deployments.items() if d.status.value != "HEALTHY"]
            detail = "; ".join(f"deployment {n} is {d.status.value}: {d.message or 'no message from Ray'}"
                               for n, d in stuck) or (status.message if status else "Serve never saw it")
            how = f"is {state}" if failed else f"is still {state} after {timeout_s:g} s"
            raise ServeStartError(f"application {app_name} {how}; {detail}", where="skelray serve",
                                  fix="see the message above; `ray status` shows the cluster's resources, "
                                      "--start-timeout-s waits longer")
        time.sleep(poll_s)
