"""The HTTP face of the graph: ``POST /v1/predict``, ``GET /v1/models``, ``GET /healthz``.

In the fused graph (no ``preprocess``/``ensemble`` handles given) this replica also runs the
model: each clip of a request joins a ``@serve.batch`` batch with the clips of concurrent
requests, and ``replica.FusedEnsemble`` preprocesses the batch, runs one forward per member and
weights the logits, inline on the replica's event loop. Inline on purpose: in a worker thread
the forward contends for the GIL with the loop's per-request work (body, parsing, response),
so under load requests waited in front of the batcher and batches stayed small (1.3-1.8 clips
per forward at concurrency 32); inline, the requests that arrive during a forward are parsed
right after it and join the next batch together (8.4 clips per forward, 1.5x the requests/s;
README, Serving). A forward that hangs blocks the loop, so Serve's own health check times out
and replaces the replica. In the per-member graph it hands the clips to Preprocess -> Ensemble
(``deployments.py``).

No ``from __future__ import annotations`` in this module, on purpose: FastAPI reads the
endpoint annotations (``request: Request``) at runtime to inject the request, and Serve's
ingress wrapper hides the module globals string annotations would be resolved against.
Serve also serialises the class when it is decorated, so every helper it calls must exist
by then: they are imported above, never defined below it.
"""

import asyncio
import logging
import os
import time
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from skelray.ensemble.combine import answer
from skelray.errors import SkelrayError
from skelray.export.manifest import read_manifest
from skelray.serve._requests import Limits, RequestError, check_length, parse_body, read_body
from skelray.serve.deployments import HEALTH_TIMEOUT_S, awaitable
from skelray.serve.replica import FusedEnsemble, apply_batching

logger = logging.getLogger("ray.serve")
api = FastAPI(title="skelray", description="Skeleton action recognition: an exported skelray bundle.")


@serve.deployment
@serve.ingress(api)
class Ingress:
    """The HTTP face: POST /v1/predict, GET /v1/models, GET /healthz."""

    def __init__(self, bundle: str, limits: dict[str, Any], preprocess: Any = None, ensemble: Any = None,
                 verify_weights: bool = True, dtype: str = "float32") -> None:
        self.manifest = read_manifest(bundle)
        self.public = self.manifest.public()
        self.limits = Limits(**limits)
        self.preprocess, self.ensemble = preprocess, ensemble
        # Fused graph: the members live here. Per-member graph: they are other deployments.
        self.fused = FusedEnsemble(bundle, verify_weights, dtype) if ensemble is None else None

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config`` of the fused graph: batching can be retuned without a restart."""
        apply_batching(self.batched, config)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def batched(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """Fused graph: one clip per call; Serve groups the clips of concurrent requests.
        Runs inline, not in a thread (see the module docstring)."""
        return list(self.fused.logits(clips))

    async def _infer(self, clips: list[np.ndarray], k: int) -> dict[str, Any]:
        if self.fused is None:
            # The preprocess response is passed on unresolved: its arrays go to Ensemble directly.
            return await self.ensemble.remote(self.preprocess.remote(clips), k)
        logits = np.stack(await asyncio.gather(*(self.batched(c) for c in clips)))
        return answer(logits, k, self.manifest.class_names)

    @api.post("/v1/predict")
    async def predict(self, request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            check_length(request.headers.get("content-length"), self.limits)
            body = await read_body(request, self.limits)
            clips, k = parse_body(body, request.headers.get("content-type"), self.limits,
                                  request.query_params.get("top_k"))
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        try:
            result = await self._infer(clips, k)
        except SkelrayError as exc:  # raised downstream by a check on the data (Ray re-raises its type)
            return JSONResponse({"error": str(exc), "field": exc.where, "status": 422}, status_code=422)
        except Exception as exc:  # noqa: BLE001 - a dead or failing replica must not take Ingress down
            logger.warning("predict failed: %s: %s", type(exc).__name__, exc)
            return JSONResponse({"error": f"the model is unavailable ({type(exc).__name__}); retry shortly",
                                 "status": 503}, status_code=503, headers={"Retry-After": "1"})
        probs = result["probabilities"]
        predictions = [{"label": tk[0]["label"], "index": tk[0]["index"], "probability": tk[0]["probability"],
                        "top_k": tk, "probabilities": [float(p) for p in row]}
                       for tk, row in zip(result["top_k"], probs)]
        return JSONResponse({"model": self.manifest.name, "predictions": predictions,
                             "latency_ms": (time.perf_counter() - started) * 1e3})

    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return self.public

    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        try:
            if self.fused is not None:
                # The replica answers, so its members are loaded; the periodic health check
                # (check_health) runs their probes and gets a bad replica replaced.
                members = {n: "ok" for n in self.fused.names}
            else:
                members = await asyncio.wait_for(awaitable(self.ensemble.ping.remote()), HEALTH_TIMEOUT_S + 5)
        except Exception as exc:  # noqa: BLE001
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        ok = all(v == "ok" for v in members.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "members": members},
                            status_code=200 if ok else 503)

    def stats(self) -> dict[str, Any]:
        """Fused graph: how many batched forward passes ran (what the batching test counts)."""
        return {"forwards": self.fused.forwards if self.fused else None,
                "clips": self.fused.clips if self.fused else None, "pid": os.getpid()}

    async def check_health(self) -> None:
        """Serve calls this every ``health_check_period_s``; raising gets the replica replaced.
        Fused graph: every member's watchdog, its probe forward in a worker thread."""
        if self.fused is not None:
            await asyncio.to_thread(self.fused.check)
