"""The application builder: ``serve run skelray.serve:app bundle=PATH [key=value ...]``.

Serve calls ``app(args)`` with the ``key=value`` pairs of ``serve run`` (or the ``args`` of a
config file's application) and runs the ``Application`` it returns. ``skelray serve`` calls it
the same way, through ``deploy`` (as does the study's served check).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.serve import Application

from skelray.export.manifest import read_manifest
from skelray.serve.config import APP_NAME, ENSEMBLE, FUSED, INGRESS, PREPROCESS, ServeArgs, plan


def limits_for(args: ServeArgs, manifest) -> dict[str, Any]:
    return {"num_joints": manifest.num_joints, "in_channels": manifest.in_channels,
            "num_classes": manifest.num_classes, "layout": manifest.layout,
            "max_body_bytes": int(args.max_body_mb * 2**20), "max_instances": args.max_instances,
            "max_frames": args.max_frames, "max_persons": args.max_persons or manifest.persons,
            "top_k": args.top_k}


def app(args: dict[str, Any]) -> Application:
    """Build the deployment graph for the bundle in ``args["bundle"]`` (see ``ServeArgs``): the
    fused Ingress alone, or Ingress -> Preprocess -> members -> Ensemble."""
    from skelray.serve.deployments import Ensemble, Member, Preprocess
    from skelray.serve.ingress import Ingress

    opts = ServeArgs.parse(args)
    bundle = str(Path(opts.bundle).resolve())
    # Read here, on the driver, so a bad bundle fails the deploy instead of every replica.
    manifest = read_manifest(bundle)
    for m in manifest.members:
        m.require_checked(opts.dtype)
    options = {p.name: p.options for p in plan(opts, manifest)}
    limits = limits_for(opts, manifest)
    if opts.resolved_graph() == FUSED:
        return Ingress.options(name=INGRESS, **options[INGRESS]).bind(bundle, limits,
                                                                      verify_weights=opts.verify_weights,
                                                                      dtype=opts.dtype)
    members = {m.name: Member.options(name=m.name, **options[m.name]).bind(bundle, m.name,
                                                                           opts.verify_weights, opts.dtype)
               for m in manifest.members}
    preprocess = Preprocess.options(name=PREPROCESS, **options[PREPROCESS]).bind(bundle)
    ensemble = Ensemble.options(name=ENSEMBLE, **options[ENSEMBLE]).bind(bundle, members)
    return Ingress.options(name=INGRESS, **options[INGRESS]).bind(bundle, limits, preprocess, ensemble)


def deploy(args: ServeArgs, timeout_s: float, report: Callable[[str], None]) -> None:
    """Run ``args``' graph as application ``APP_NAME`` at route ``/`` on the Serve this process
    started (``serve.start``), and wait until it is RUNNING, calling ``report`` with each
    deployment's state; ``placement.ServeStartError`` when it does not get there in ``timeout_s``."""
    from ray import serve

    from skelray.serve.placement import wait_until_running

    serve.run_many([serve.RunTarget(app(args.model_dump()), name=APP_NAME, route_prefix="/")],
                   wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
    wait_until_running(APP_NAME, timeout_s, report)
