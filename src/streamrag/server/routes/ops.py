"""Health, Prometheus metrics and what this service runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from streamrag import __version__
from streamrag.llm import model_name
from streamrag.server.metrics import CONTENT_TYPE_LATEST
from streamrag.server.service import ServiceDep

router = APIRouter(tags=["service"])
public = APIRouter(tags=["service"])  # no API key: load balancers probe it


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(service: ServiceDep) -> Response:
    """Prometheus metrics: time to first token, answer time, tokens/s, retrieval latency,
    active streams, runs by finish reason, cancellations, disconnects, errors by code."""
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@public.get("/healthz")
async def healthz(service: ServiceDep) -> dict[str, Any]:
    """Liveness; needs no API key."""
    return {"status": "ok", "active_runs": service.runs.active}


@public.head("/healthz", response_class=Response, responses={200: {"content": {}}})
async def healthz_head() -> Response:
    """Liveness for load balancers that probe with HEAD."""
    return Response()


@router.get("/v1/info")
async def info(service: ServiceDep) -> dict[str, Any]:
    """The version, the default knowledge base, the configured models and how often a quiet
    event stream sends a heartbeat."""
    settings = service.settings
    return {
        "version": __version__,
        "default_kb": settings.kb,
        "llm_model": model_name(settings),
        "embed_model": settings.embed_model,
        "heartbeat_s": settings.heartbeat_s,
    }
