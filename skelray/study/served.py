"""Claim 6: the ensemble served over HTTP scores what it scores offline, on the test split.

``served_check`` runs after the study's sweeps, on the Ray the study started (or joined):

1. the ensemble builder's choice over one sweep's finished trials (chosen on validation, every
   seed pooled: ``build_ensemble``), saved as ``served/ENSEMBLE.json`` as ``skelray ensemble
   build`` saves it, and exported to ``served/bundle`` (``export_bundle``, float32 checked);
2. served by Ray Serve in the default graph, its placement fitted to the cluster as ``skelray
   serve`` fits it (``placement.fit_args``, ``builder.deploy``), the proxy on 127.0.0.1 (the
   driver runs on the head node: locally, or under ``ray job submit``);
3. the raw clips of the members' test split (``skelray.train.data.load_splits``) posted as
   JSON, up to ``PER_REQUEST`` clips a request (fewer for a small split, so it still goes as
   several requests, ``per_request``), ``CONCURRENCY`` requests at a time, and their answers
   compared with the bundle's offline ones on the same clips (``Bundle.predict``);
4. Serve shut down, so the study goes on; ``served.json`` written atomically.

Any failure (no trial to choose from, an export refused, Serve not starting, an HTTP error) is
written into ``served.json`` as ``error`` and said on the console, never raised: the study's
report is still written, and the claim is reported ``inconclusive`` with the message. The
runner does not redo a check whose ``served.json`` exists (delete it to run the check again).
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from skelray import record
from skelray.config import DataSpec
from skelray.ensemble import EnsembleSpec
from skelray.ensemble.combine import top1
from skelray.errors import SkelrayError
from skelray.runtime import free_port

if TYPE_CHECKING:
    from skelray.train.loop import Split

SERVED_FILE = "served.json"
SERVED_DIR = "served"  # ENSEMBLE.json and bundle/
KIND = "skelray-study-served"
PER_REQUEST = 8  # most clips per POST: several, as a client batching its clips would send them
CONCURRENCY = 4  # requests in flight at once, so Serve batches clips of concurrent requests
START_TIMEOUT_S = 180.0
HTTP_TIMEOUT_S = 120.0
SHOWN = 20  # differing clips named in served.json


class ServedCheckError(SkelrayError):
    """A step of the served check found something wrong (``where``: the folder, URL or
    service involved; ``served_check`` prefixes the step)."""


def read_served(run_dir: Path) -> dict[str, Any] | None:
    """``served.json`` of a study run, or None when the check has not run; a file that cannot be
    read is returned as an error record, so the claim says what is wrong with it."""
    path = Path(run_dir) / SERVED_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return {"kind": KIND, "error": f"{path} is not readable JSON ({exc}); delete it and resume the study"}
    return doc if isinstance(doc, dict) else {"kind": KIND, "error": f"{path} does not hold a JSON object"}


def served_check(run_dir: Path, sweep_dir: Path, *, local: bool, console: Console) -> dict[str, Any]:
    """Choose, export, serve and score the ensemble of ``sweep_dir`` (see the module docstring);
    write and return ``run_dir/served.json``. ``local``: the study's Ray is the embedded local
    one (placement is shared out on its node), else an existing cluster (placement checked).
    A failure is recorded as ``error``, naming the step it happened in, and not raised."""
    started = time.perf_counter()
    step = ["choosing the ensemble"]
    try:
        doc = _check(run_dir, sweep_dir, local=local, say=console.print, step=step)
    except Exception as exc:  # noqa: BLE001 - recorded in served.json, so the study's report is written
        doc = {"kind": KIND, "sweep": sweep_dir.name, "error": f"{step[0]}: {_message(exc)}"}
        console.print(f"[red]study served check failed[/] ({escape(doc['error'])}); written to "
                      f"{run_dir / SERVED_FILE}, the claim is reported inconclusive (delete the file and "
                      "resume the study to run it again)")
    else:
        console.print(f"study served check: {doc['clips']} clips, top-1 over HTTP {_pct(doc['http_top1'])}, "
                      f"offline {_pct(doc['offline_top1'])} (builder {_pct(doc['builder_top1'])}), "
                      f"{doc['differing']} top label(s) differ, largest probability difference "
                      f"{doc['max_prob_diff']:.2g}")
    doc["wall_s"] = round(time.perf_counter() - started, 2)
    record.write_text_atomic(run_dir / SERVED_FILE, json.dumps(doc, indent=2))
    return doc


def _check(run_dir: Path, sweep_dir: Path, *, local: bool, say: Callable[[str], None],
           step: list[str]) -> dict[str, Any]:
    """The check's steps, in order; ``step[0]`` names the one under way (for a failure's message)."""
    name = f"{sweep_dir.name}-ensemble"
    spec = _choose(run_dir / SERVED_DIR, sweep_dir)
    say(f"study served check: ensemble of {len(spec.members)} trial(s) of {sweep_dir.name}, the builder's "
        f"offline test top-1 {_pct(spec.ensemble.test_top1)}; exporting it")
    step[0] = "exporting the bundle"
    bundle = _export(run_dir / SERVED_DIR, name)
    step[0] = "reading the test split"
    test = _test_split(spec)
    size = per_request(len(test))
    step[0] = "serving the bundle"
    with _serving(bundle, local=local, say=say) as (url, graph):
        step[0] = "scoring over HTTP"
        say(f"study served check: posting {len(test)} test clips to {url}, {size} a request, "
            f"{CONCURRENCY} requests at a time")
        http_started = time.perf_counter()
        served = _post_all(url, test.clips, size)
        http_s = time.perf_counter() - http_started
        step[0] = "shutting Serve down"
    step[0] = "scoring offline"
    return {"kind": KIND, "sweep": sweep_dir.name, "ensemble": name, **_compare(spec, bundle, test, served),
            "url": url, "graph": graph, "per_request": size, "concurrency": CONCURRENCY,
            "http_s": round(http_s, 2), "error": None}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _message(exc: Exception) -> str:
    """An exception in words: a SkelrayError's own text, else its type and text."""
    return str(exc) if isinstance(exc, SkelrayError) else f"{type(exc).__name__}: {exc}"


def _choose(out: Path, sweep_dir: Path) -> EnsembleSpec:
    """The builder's ensemble over the sweep's finished trials, saved as ``out/ENSEMBLE.json``."""
    from skelray.ensemble import build_ensemble

    spec = build_ensemble(sweep_dir)
    if spec.ensemble.test_top1 is None:
        raise ServedCheckError("the chosen members saved no test logits: there is no offline test top-1 to "
                               "compare with", where=str(sweep_dir), fix="give the sweep a test split")
    spec.save(out / "ENSEMBLE.json")
    return spec


def _export(out: Path, name: str) -> Path:
    """``out/ENSEMBLE.json`` exported to ``out/bundle`` as bundle ``name`` (replacing a bundle a
    killed run left), checked at float32, the dtype it is served at."""
    from skelray.export import export_bundle

    bundle = out / "bundle"
    export_bundle(out / "ENSEMBLE.json", bundle, overwrite=True, name=name, dtypes=("float32",))
    return bundle


def _test_split(spec: EnsembleSpec) -> Split:
    """The test split the ensemble's members were tested on: their data spec (one for all, the
    stream aside, which each member's preprocessing applies) read again."""
    from skelray.train.data import data_key, load_splits

    datas: dict[str, DataSpec] = {}
    for m in spec.members:
        cfg = record.load_trial_config((Path(spec.experiment) / m.checkpoint).parent)
        datas.setdefault(data_key(cfg.data), cfg.data)
    if len(datas) != 1:
        raise ServedCheckError(f"the members were trained on {len(datas)} different datasets",
                               where=spec.experiment, fix="ensemble trials of one dataset")
    test = load_splits(next(iter(datas.values()))).splits["test"]
    if not len(test):
        raise ServedCheckError("the members' data has an empty test split", where=spec.experiment)
    return test


@contextmanager
def _serving(bundle: Path, *, local: bool, say: Callable[[str], None]) -> Iterator[tuple[str, str]]:
    """Serve ``bundle`` on this process's Ray in the default graph and yield its predict URL and
    the graph that default resolved to;
    Serve is shut down on the way out, whatever happened. Refused when Serve already runs on
    this Ray: shutting it down afterwards would take someone else's applications with it."""
    from ray import serve

    from skelray.serve.builder import deploy
    from skelray.serve.config import ServeArgs
    from skelray.serve.placement import fit_args

    before = serve.status()
    if before.applications or before.proxies:
        names = ", ".join(before.applications) or "none, but its proxies are up"
        raise ServedCheckError(f"Serve already runs on this Ray (applications: {names})", where="serve",
                               fix="stop it (`serve shutdown`) and resume the study; the check starts "
                                   "its own Serve and shuts it down")
    args = fit_args(ServeArgs.parse({"bundle": str(bundle)}), local=local, say=say)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        deploy(args, START_TIMEOUT_S, lambda line: say(f"  {line}"))
        yield f"http://127.0.0.1:{port}/v1/predict", args.resolved_graph()
    finally:
        serve.shutdown()


def _post(url: str, clips: Sequence[np.ndarray]) -> list[list[float]]:
    """One request's clips as JSON instances; their class probabilities, in order."""
    body = json.dumps({"instances": [c.tolist() for c in clips], "top_k": 1}).encode()
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
            doc = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise ServedCheckError(f"answered HTTP {exc.code}: {detail}", where=f"POST {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ServedCheckError(f"no answer ({getattr(exc, 'reason', exc)})", where=f"POST {url}") from None
    predictions = doc.get("predictions") if isinstance(doc, dict) else None
    if not isinstance(predictions, list) or len(predictions) != len(clips):
        raise ServedCheckError(f"answered {len(predictions or [])} predictions for {len(clips)} clips",
                               where=f"POST {url}")
    return [p["probabilities"] for p in predictions]


def per_request(n: int) -> int:
    """Clips per request for ``n`` clips: ``PER_REQUEST``, or fewer (2 at least) when that
    would leave fewer requests than ``CONCURRENCY``: a small split is still sent in requests
    of several clips, some of them at once."""
    return max(2, min(PER_REQUEST, math.ceil(n / CONCURRENCY)))


def _post_all(url: str, clips: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Every clip's class probabilities over HTTP, ``(N, classes)``: ``size`` clips a request,
    at most ``CONCURRENCY`` requests in flight."""
    chunks = [clips[i:i + size] for i in range(0, len(clips), size)]
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        answers = list(pool.map(lambda chunk: _post(url, chunk), chunks))
    return np.array([p for a in answers for p in a], dtype=np.float64)


def _offline(bundle: Path, clips: Sequence[np.ndarray], batch: int = 64) -> np.ndarray:
    """The bundle's offline class probabilities of ``clips``, ``(N, classes)``."""
    from skelray.export import load_bundle

    b = load_bundle(bundle)
    return np.concatenate([b.predict(clips[i:i + batch], k=1)["probabilities"]
                           for i in range(0, len(clips), batch)])


def _compare(spec: EnsembleSpec, bundle: Path, test: Split, served: np.ndarray) -> dict[str, Any]:
    """The figures of served.json: the HTTP answers against the bundle's offline answers on the
    same clips (top-1 of each, clips whose top label differs, the largest probability
    difference), and the builder's offline test top-1."""
    offline = _offline(bundle, test.clips)
    differ = np.flatnonzero(served.argmax(axis=1) != offline.argmax(axis=1))
    ids = list(test.ids) or [str(i) for i in range(len(test))]
    return {"members": [{"key": m.key, "stream": m.stream, "weight": m.weight} for m in spec.members],
            "bundle": f"{SERVED_DIR}/bundle", "clips": len(test), "http_top1": top1(served, test.labels),
            "offline_top1": top1(offline, test.labels), "builder_top1": spec.ensemble.test_top1,
            "differing": len(differ), "differing_clips": [ids[i] for i in differ[:SHOWN]],
            "max_prob_diff": float(np.abs(served - offline).max())}
