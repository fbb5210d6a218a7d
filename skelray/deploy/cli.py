"""``skelray sweep submit|status|logs|stop`` (Ray Jobs) and ``skelray k8s render|validate``.

``register(sweep_app)`` adds the four job commands to the existing ``skelray sweep`` group.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from skelray.console import make_console

if TYPE_CHECKING:  # imported late at run time: Ray is slow to import, and --help must be fast
    from skelray.deploy.jobs import Jobs

console = make_console()
err_console = make_console(stderr=True)

_ADDRESS = typer.Option(..., "--address", envvar="RAY_ADDRESS",
                        help="The cluster's dashboard / Jobs API, e.g. http://HEAD:8265 (or $RAY_ADDRESS).")
_JOB_ID = typer.Argument(..., help="The submission id `skelray sweep submit` printed.")
_TIMEOUT = typer.Option(None, "--timeout", help="With --wait: give up after this many seconds.")
_FAILED = ("FAILED", "STOPPED")


def _jobs(address: str) -> Jobs:
    from skelray.deploy.jobs import Jobs

    return Jobs(address)


def _wait(jobs: Jobs, job_id: str, timeout: float | None) -> str:
    return jobs.wait(job_id, timeout_s=timeout, on_change=lambda s: console.print(f"{job_id}: {s}"))


def _finish(jobs: Jobs, job_id: str, status: str) -> None:
    """Say why a job failed or stopped (Ray's message: the driver's last log lines), exit 1."""
    if status in _FAILED:
        message = jobs.info(job_id).message
        if message:
            console.print(message, highlight=False)
        raise typer.Exit(1)


def submit(
    sweep_file: Path = typer.Argument(..., help="Sweep YAML (skelray or W&B format)."),
    address: str = _ADDRESS,
    storage: str = typer.Option(None, "--storage", help="Results: an absolute path every node mounts, or s3://..."),
    data: str = typer.Option(None, "--data", help="Dataset path as the cluster's nodes see it."),
    set_: list[str] = typer.Option([], "--set", help="Override a config path: KEY=VALUE (repeatable)."),
    wait: bool = typer.Option(False, "--wait", help="Follow the job to its end; exit 1 unless it succeeds."),
    timeout: float = _TIMEOUT,
    env: list[str] = typer.Option([], "--env", help="Also forward this variable of your environment (by name)."),
    ship: bool = typer.Option(True, "--ship/--no-ship",
                              help="Upload this checkout's skelray package (--no-ship: use the image's)."),
    pip: bool = typer.Option(False, "--pip", help="Install requirements.lock in the job's env (slow; "
                                                  "default: the cluster image has the pinned set)."),
    requirements: Path = typer.Option(None, "--requirements", help="With --pip: this file instead."),
) -> None:
    """Submit a sweep to a running Ray cluster as a Ray job and print its submission id."""
    from skelray.deploy.jobs import masked
    from skelray.deploy.submit import REPO_DIR, staged

    reqs = (requirements or REPO_DIR / "requirements.lock") if (pip or requirements) else None
    with staged(sweep_file, storage=storage, data=data, sets=set_, ship=ship, requirements=reqs,
                env_names=env) as sub:
        jobs = _jobs(address)
        for path in sub.skipped_large:
            err_console.print(f"[yellow]warning:[/] not uploading skelray/{path} (over 5 MiB)")
        env_note = masked(sub.runtime_env).get("env_vars", {})
        job_id = jobs.submit(sub.entrypoint, sub.runtime_env, submission_id=sub.submission_id,
                             metadata={"skelray_sweep": sub.sweep_name, "storage": sub.storage})
    console.print(f"submitted sweep [bold]{sub.sweep_name}[/] to {jobs.address}", highlight=False)
    console.print(f"  entrypoint: {sub.entrypoint}", highlight=False, soft_wrap=True)
    if env_note:
        console.print(f"  env: {', '.join(f'{k}={v}' for k, v in env_note.items())}", highlight=False)
    console.print(f"  results: {sub.storage}/{sub.sweep_name}", highlight=False, soft_wrap=True)
    console.print(f"  follow: skelray sweep logs {job_id} --address {jobs.address} --follow", highlight=False,
                  soft_wrap=True)
    typer.echo(job_id)  # last line, plain: scripts take the id from here
    if wait:
        _finish(jobs, job_id, _wait(jobs, job_id, timeout))


def status(job_id: str = _JOB_ID, address: str = _ADDRESS,
           wait: bool = typer.Option(False, "--wait", help="Poll until the job ends."),
           timeout: float = _TIMEOUT) -> None:
    """Print a job's status (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED); exit 1 if FAILED or STOPPED."""
    jobs = _jobs(address)
    if wait:
        final = _wait(jobs, job_id, timeout)
    else:
        final = jobs.status(job_id)
        console.print(f"{job_id}: {final}")
    _finish(jobs, job_id, final)


def logs(job_id: str = _JOB_ID, address: str = _ADDRESS,
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends.")) -> None:
    """Print a job's driver log (the sweep's progress and leaderboard)."""
    jobs = _jobs(address)
    if follow:
        jobs.follow(job_id, lambda chunk: (sys.stdout.write(chunk), sys.stdout.flush()))
    else:
        sys.stdout.write(jobs.logs(job_id))


def stop(job_id: str = _JOB_ID, address: str = _ADDRESS,
         wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the job has stopped."),
         timeout: float = typer.Option(60.0, "--timeout", help="With --wait: seconds to wait.")) -> None:
    """Stop a running job (its trials end; finished trials stay in the results)."""
    jobs = _jobs(address)
    if not jobs.stop(job_id):
        console.print(f"{job_id}: already {jobs.status(job_id)}")
        return
    console.print(f"{job_id}: stop requested")
    if wait:
        _wait(jobs, job_id, timeout)


def register(sweep_app: typer.Typer) -> None:
    """Add the Ray Jobs commands to ``skelray sweep``."""
    sweep_app.command("submit")(submit)
    sweep_app.command("status")(status)
    sweep_app.command("logs")(logs)
    sweep_app.command("stop")(stop)


# -- skelray k8s ------------------------------------------------------------------------------

k8s_app = typer.Typer(no_args_is_help=True)


@k8s_app.command("render")
def render(
    sweep_file: Path = typer.Argument(..., help="Sweep YAML to run as a KubeRay RayJob."),
    image: str = typer.Option("skelray:latest", "--image", help="Container image with skelray installed."),
    namespace: str = typer.Option(None, "--namespace", "-n", help="Namespace of both objects."),
    gpus: int = typer.Option(0, "--gpus", min=0, help="GPUs per worker pod (0: a CPU worker group)."),
    workers: str = typer.Option("1:0:4", "--workers", help="Worker pods as REPLICAS:MIN:MAX."),
    claim: str = typer.Option("skelray-results", "--claim", help="PersistentVolumeClaim mounted at /results."),
    set_: list[str] = typer.Option([], "--set", help="Override a config path: KEY=VALUE (repeatable)."),
) -> None:
    """Print a ConfigMap holding the sweep and a RayJob that runs it, as multi-document YAML."""
    from skelray.deploy.k8s import RenderOptions, render_sweep_job, to_yaml

    opts = RenderOptions.parse(image=image, namespace=namespace, gpus=gpus, workers=workers, claim=claim)
    sys.stdout.write(to_yaml(render_sweep_job(sweep_file, opts, sets=set_)))


@k8s_app.command("validate")
def validate(
    files: list[Path] = typer.Argument(..., help="Manifest files (multi-document YAML); '-' reads stdin."),
    crds: Path = typer.Option(None, "--crds", help="Folder of KubeRay CRD YAMLs to check Ray objects against."),
    external: list[str] = typer.Option([], "--external",
                                       help="A ConfigMap/Secret/claim that exists outside these files (repeatable)."),
) -> None:
    """Check manifests offline: KubeRay CRD schemas (with --crds), the operator's extra rules, built-in kinds."""
    import yaml

    from skelray.deploy.validate import load_crd_schemas, validate_objects

    docs = []
    for f in files:
        text = sys.stdin.read() if str(f) == "-" else f.read_text()
        docs += [d for d in yaml.safe_load_all(text) if d is not None]
    schemas = load_crd_schemas(crds) if crds else None
    problems = validate_objects(docs, schemas=schemas, external=external)
    for p in problems:
        err_console.print(f"[red]x[/] {p}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    console.print(f"ok: {len(docs)} objects" + ("" if schemas else " (no --crds: Ray objects not schema-checked)"))
