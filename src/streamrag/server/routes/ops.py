"""Health and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from streamrag.server.metrics import CONTENT_TYPE_LATEST
from streamrag.server.service import ServiceDep

router = APIRouter(tags=["service"])


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(service: ServiceDep) -> Response:
    """Prometheus metrics: time to first token, answer time, tokens/s, retrieval latency,
    active streams, runs by finish reason, cancellations, disconnects, errors by code."""
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz")
async def healthz(service: ServiceDep) -> dict[str, Any]:
    """Liveness; needs no API key."""
    return {"status": "ok", "active_runs": service.runs.active}
