"""The HTTP face of the graph: ``POST /v1/predict``, ``GET /v1/models``, ``GET /healthz``.

No ``from __future__ import annotations`` in this module, on purpose: FastAPI reads the
endpoint annotations (``request: Request``) at runtime to inject the request, and Serve's
ingress wrapper hides the module globals string annotations would be resolved against.
Serve also serialises the class when it is decorated, so every helper it calls must exist
by then: they are imported above, never defined below it.
"""

import asyncio
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from skelray.errors import SkelrayError
from skelray.export.manifest import read_manifest
from skelray.serve._requests import Limits, RequestError, check_length, parse_body, read_body
from skelray.serve.deployments import HEALTH_TIMEOUT_S, awaitable

logger = logging.getLogger("ray.serve")
api = FastAPI(title="skelray", description="Skeleton action recognition: an exported skelray bundle.")


@serve.deployment
@serve.ingress(api)
class Ingress:
    """The HTTP face: POST /v1/predict, GET /v1/models, GET /healthz."""

    def __init__(self, bundle: str, preprocess: Any, ensemble: Any, limits: dict[str, Any]) -> None:
        self.manifest = read_manifest(bundle)
        self.public = self.manifest.public()
        self.limits = Limits(**limits)
        self.preprocess, self.ensemble = preprocess, ensemble

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
            # The preprocess response is passed on unresolved: its arrays go to Ensemble directly.
            result = await self.ensemble.remote(self.preprocess.remote(clips), k)
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
            members = await asyncio.wait_for(awaitable(self.ensemble.ping.remote()), HEALTH_TIMEOUT_S + 5)
        except Exception as exc:  # noqa: BLE001
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        ok = all(v == "ok" for v in members.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "members": members},
                            status_code=200 if ok else 503)
