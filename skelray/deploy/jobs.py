"""Submit a sweep to a running Ray cluster through the Ray Jobs API, and follow or stop it.

The job runs ``python -m skelray.cli sweep run <file> --address auto`` on the head node, in a
runtime environment carrying the sweep file (working_dir), this checkout's ``skelray`` package
(py_modules, so the cluster runs the code you have, on the image's pinned dependencies) and
the W&B variables of the caller's environment (in memory only: never written, never printed).

Ray 2.60 clusters demand a token by default. The client presents it as a bearer header; it is
looked up where Ray itself looks: ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` names,
then ``~/.ray/auth_token``.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skelray.errors import SkelrayError

TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
_TOKEN_FIX = (f"export {TOKEN_ENV}=<the cluster's token> (on the head node `ray get-auth-token` prints it), "
              f"or put it in ~/.ray/auth_token or a file named by {TOKEN_PATH_ENV}")


class ClusterError(SkelrayError):
    """The Ray cluster cannot be reached, refuses this client, or does not know a job."""


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)  # never shown: repr, logs and messages name the source only
    source: str  # "RAY_AUTH_TOKEN" or the file it was read from


def default_token_path() -> Path:
    """Where ``ray get-auth-token --generate`` writes and Ray clients read by default."""
    return Path.home() / ".ray" / "auth_token"


def find_token(env: Mapping[str, str] | None = None) -> Token | None:
    """The token this client presents, in Ray's own order of precedence; None if there is none."""
    env = os.environ if env is None else env
    if env.get(TOKEN_ENV, "").strip():
        return Token(env[TOKEN_ENV].strip(), TOKEN_ENV)
    named = env.get(TOKEN_PATH_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            # Ray does not fall back to the default file when a path is named: neither do we.
            raise ClusterError("names a file that does not exist", where=f"{TOKEN_PATH_ENV}={named}",
                               fix=f"point it at the token file, or unset it and use {TOKEN_ENV}")
        return Token(path.read_text().strip(), str(path))
    path = default_token_path()
    if path.is_file() and path.read_text().strip():
        return Token(path.read_text().strip(), str(path))
    return None


@contextmanager
def _cluster_errors(address: str, token: Token | None) -> Iterator[None]:
    """Turn the Jobs client's failures into errors that say which address and what to do."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError:
        if token is None:
            raise ClusterError("the cluster requires a token and this client has none", where=address,
                               fix=_TOKEN_FIX) from None
        raise ClusterError(f"the token from {token.source} was rejected (a token from another cluster?)",
                           where=address, fix=_TOKEN_FIX) from None
    except ConnectionError:
        raise ClusterError("cannot reach the Ray Jobs API", where=address,
                           fix="pass the dashboard address, e.g. --address http://HEAD:8265, of a head "
                               "started with --include-dashboard=true") from None


class Jobs:
    """A Jobs API client for one cluster that presents the token and explains failures."""

    def __init__(self, address: str, *, token: Token | None = None, env: Mapping[str, str] | None = None) -> None:
        from ray.job_submission import JobSubmissionClient

        if "://" not in address:
            address = f"http://{address}"
        if not address.startswith(("http://", "https://")):
            raise ClusterError("is not the address of a Ray Jobs API", where=f"--address {address}",
                               fix="pass the dashboard's URL, e.g. http://HEAD:8265 (not ray:// or the GCS port)")
        self.address = address
        self.token = token if token is not None else find_token(env)
        # An explicit header works whatever RAY_AUTH_MODE says on this machine; Ray's client
        # only adds one when the local mode is "token".
        headers = {"Authorization": f"Bearer {self.token.value}"} if self.token else {}
        with self._errors():
            self.client = JobSubmissionClient(address, headers=headers)
            self.client.list_jobs()  # /api/version needs no token: this checks the token now

    def _errors(self) -> AbstractContextManager[None]:
        return _cluster_errors(self.address, self.token)

    def _known(self, job_id: str) -> None:
        with self._errors():
            try:
                self.client.get_job_info(job_id)
            except RuntimeError as exc:
                if "404" in str(exc) or "does not exist" in str(exc):
                    raise ClusterError(f"no job {job_id!r} on this cluster", where=self.address,
                                       fix="use the submission id `skelray sweep submit` printed "
                                           "(`ray job list` shows them all)") from None
                raise

    def submit(self, entrypoint: str, runtime_env: dict[str, Any], *, submission_id: str,
               metadata: dict[str, str] | None = None) -> str:
        with self._errors():
            # entrypoint_num_cpus=0: the driver only schedules trials, and the head has no CPUs.
            return self.client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                                          submission_id=submission_id, metadata=metadata or {},
                                          entrypoint_num_cpus=0)

    def info(self, job_id: str) -> Any:
        self._known(job_id)
        with self._errors():
            return self.client.get_job_info(job_id)

    def status(self, job_id: str) -> str:
        return str(self.info(job_id).status)

    def logs(self, job_id: str) -> str:
        self._known(job_id)
        with self._errors():
            return self.client.get_job_logs(job_id)

    def follow(self, job_id: str, write: Callable[[str], None]) -> None:
        """Stream the job's log to ``write`` until the job ends."""
        self._known(job_id)

        async def tail() -> None:
            async for chunk in self.client.tail_job_logs(job_id):
                write(chunk)

        with self._errors():
            asyncio.run(tail())

    def stop(self, job_id: str) -> bool:
        self._known(job_id)
        with self._errors():
            return self.client.stop_job(job_id)

    def wait(self, job_id: str, *, timeout_s: float | None = None, poll_s: float = 1.0,
             on_change: Callable[[str], None] | None = None) -> str:
        """Poll until the job reaches a terminal state; return it. ``timeout_s`` None: no limit."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last = ""
        while True:
            status = self.status(job_id)
            if status != last and on_change is not None:
                on_change(status)
            last = status
            if status in TERMINAL:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise ClusterError(f"job {job_id} still {status} after {timeout_s:g} s", where=self.address,
                                   fix=f"follow it with `skelray sweep status {job_id} --wait`")
            time.sleep(poll_s)


# -- what a submission carries ---------------------------------------------------------------

# Variables forwarded from the caller's environment when set: W&B's key and where runs go.
FORWARDED_ENV = ("WANDB_API_KEY", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_MODE", "WANDB_BASE_URL")
# Never shipped: a cluster has its own token, and ours would land in the job's stored metadata.
NEVER_FORWARDED = (TOKEN_ENV, TOKEN_PATH_ENV, "RAY_AUTH_MODE")


def forwarded_env(names: list[str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables to set on the cluster: FORWARDED_ENV plus ``names``, where set here."""
    env = os.environ if env is None else env
    for name in names:
        if name in NEVER_FORWARDED:
            raise ClusterError("is never sent to the cluster", where=f"--env {name}",
                               fix="the cluster uses its own token; remove this --env")
        if "=" in name:
            raise ClusterError("takes a variable name, not NAME=VALUE", where=f"--env {name.split('=')[0]}=...",
                               fix="export the variable and pass its name: values stay out of shell history")
    return {n: env[n] for n in dict.fromkeys([*FORWARDED_ENV, *names]) if env.get(n)}


def masked(runtime_env: Mapping[str, Any]) -> dict[str, Any]:
    """The runtime environment as it may be printed: every env var value replaced by ***."""
    out = dict(runtime_env)
    if "env_vars" in out:
        out["env_vars"] = {k: "***" for k in out["env_vars"]}
    return out


def entrypoint(sweep_name: str, *, storage: str, data: str | None, sets: list[str]) -> str:
    """The job's shell command. ``python -m`` rather than the ``skelray`` script: the package may
    arrive through py_modules only, on an image that has its dependencies but not skelray."""
    args = ["python", "-m", "skelray.cli", "sweep", "run", sweep_name, "--address", "auto", "--storage", storage]
    if data:
        args += ["--data", data]
    for item in sets:
        args += ["--set", item]
    return shlex.join(args)


def submission_id(sweep: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c == "-" else "-" for c in sweep.lower()).strip("-")[:40]
    return f"skelray-{safe}-{stamp}-{os.urandom(2).hex()}"
