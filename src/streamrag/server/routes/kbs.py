"""Knowledge bases: list, drop, search; upload documents with ingest progress as SSE; list
and delete documents.

Uploads are kept by :class:`~streamrag.uploads.UploadFolder`: their documents have
opaque ids and the uploaded name as their source; uploading the same name again replaces the
file (unchanged content is then skipped by the incremental ingest, changed content replaced).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from streamrag.ingest.loaders import LOADERS
from streamrag.ingest.pipeline import IngestEvent, IngestReport
from streamrag.kb import drop_knowledge_base, list_knowledge_bases
from streamrag.server.errors import ApiError
from streamrag.server.openapi import INGEST_EVENTS, errors, event_stream
from streamrag.server.schemas import KbName, SearchRequest
from streamrag.server.service import ServiceDep
from streamrag.server.sse import EventStream, sse_message

router = APIRouter(tags=["knowledge bases"])

KbPath = Annotated[KbName, Path()]
_SUFFIXES = "|".join(suffix.lstrip(".") for suffix in sorted(LOADERS))
_MULTIPART = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {
                    "files": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "format": "binary"},
                    }
                },
            },
            "encoding": {
                "files": {
                    "headers": {
                        "Content-Disposition": {
                            "description": "The file's name; its extension picks the reader.",
                            "schema": {
                                "type": "string",
                                "pattern": rf'filename="[^"]*\.({_SUFFIXES})"',
                            },
                            "example": 'form-data; name="files"; filename="notes.md"',
                        }
                    }
                }
            },
        }
    },
}


@router.get("/v1/kbs")
async def list_kbs(service: ServiceDep) -> list[dict[str, Any]]:
    """The knowledge bases with their sizes, embedding model, fusion and when each last
    changed."""
    infos = await asyncio.to_thread(list_knowledge_bases, service.settings, service.backend)
    return [
        {
            "name": info.name,
            "documents": info.documents,
            "chunks": info.chunks,
            "embed_model": info.embed_model,
            "fusion": info.fusion,
            "size_bytes": info.size_bytes,
            "updated_at": info.updated_at,
        }
        for info in infos
    ]


@router.delete("/v1/kbs/{kb}", responses=errors(404))
async def drop_kb(kb: KbPath, service: ServiceDep) -> dict[str, Any]:
    """Delete a knowledge base, its documents and its uploaded files."""

    def drop() -> None:
        service.forget(kb)
        drop_knowledge_base(kb, service.settings, service.backend)

    async with service.ingest_turn(kb):
        await asyncio.to_thread(drop)
    return {"kb": kb, "dropped": True}


@router.get("/v1/kbs/{kb}/documents", responses=errors(404))
async def list_documents(kb: KbPath, service: ServiceDep) -> list[dict[str, Any]]:
    """The documents of a knowledge base."""
    base = await asyncio.to_thread(service.knowledge_base, kb)
    documents = await asyncio.to_thread(base.documents)
    return [asdict(document) for document in documents]


@router.delete("/v1/kbs/{kb}/documents/{doc_id:path}", responses=errors(404))
async def delete_document(kb: KbPath, doc_id: str, service: ServiceDep) -> dict[str, Any]:
    """Remove a document by its id; the uploaded file it came from goes with the last of
    that file's documents."""
    base = await asyncio.to_thread(service.knowledge_base, kb)

    def remove() -> int:
        store = base.store
        [source] = [d.source for d in store.list_documents() if d.doc_id == doc_id] or [None]
        removed = base.remove(doc_id, by_path=False)
        if source is not None and not store.doc_ids_by_source(source):
            service.backend.uploads.discard(kb, source)
        return removed

    async with service.ingest_turn(kb):
        removed = await asyncio.to_thread(remove)
    return {"kb": kb, "doc_id": doc_id, "removed": removed}


@router.post("/v1/kbs/{kb}/search", responses=errors(404))
async def search(kb: KbPath, request: SearchRequest, service: ServiceDep) -> dict[str, Any]:
    """The best chunks for a query (hybrid, vector or BM25) as ``hits``; ``degraded`` says
    why a hybrid search ranked by BM25 alone (the query could not be embedded), else null."""
    base = await asyncio.to_thread(service.knowledge_base, kb)
    where = request.filters.to_filter() if request.filters else None
    hits = await asyncio.to_thread(base.search, request.query, request.k, request.mode, where)
    return {"hits": [hit.to_dict() for hit in hits], "degraded": hits.degraded}


@router.post(
    "/v1/kbs/{kb}/documents",
    openapi_extra={"requestBody": _MULTIPART},
    response_class=EventStream,
    response_model=None,
    responses={
        **event_stream(
            "Ingest progress; with ?stream=false, the report as JSON.",
            INGEST_EVENTS,
            "The event's number in this upload's stream.",
            json_component="IngestSummary",
        ),
        **errors(411, 415),
    },
)
async def upload(
    kb: KbPath,
    request: Request,
    service: ServiceDep,
    stream: Annotated[bool, Query(description="Progress as SSE; false: the report.")] = True,
) -> EventStream | JSONResponse:
    """Upload files (multipart field ``files``) and ingest them into the knowledge base,
    which is created if needed. Progress streams as server-sent events ``found``,
    ``planned``, ``embedded``, ``file`` (one per file, with its status) and ``done`` (the
    report). The ingest finishes even if the client goes away."""
    settings = service.settings
    limit = settings.upload_max_mb * 1024 * 1024
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise ApiError(411, "length_required", "an upload needs a Content-Length header")
    if int(length) > limit:
        raise ApiError(
            413,
            "upload_too_large",
            f"the upload has {int(length)} bytes; the limit is {limit} "
            f"({settings.upload_max_mb} MB, STREAMRAG_UPLOAD_MAX_MB)",
        )
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "not_multipart", "send the files as multipart/form-data")
    try:
        form = await request.form(max_files=settings.upload_max_files, max_fields=20)
    except HTTPException as exc:
        raise ApiError(400, "bad_multipart", str(exc.detail)) from None
    try:
        files = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
        if not files:
            raise ApiError(422, "no_files", "no files: send them in multipart fields named 'files'")
        for file in files:
            suffix = FilePath(file.filename or "").suffix.lower()
            if suffix not in LOADERS:
                raise ApiError(
                    415,
                    "unsupported_type",
                    f"{file.filename!r}: unsupported file type {suffix or '(none)'!r}; "
                    f"supported: {', '.join(sorted(LOADERS))}",
                )
        origins = await asyncio.to_thread(service.backend.uploads.save, kb, files)
    finally:
        await form.close()
    events = service.ingest(kb, origins)
    if stream:
        return EventStream(_sse(events))
    report = IngestReport()
    started = time.perf_counter()
    try:
        async for event in events:
            report.add(event)
    except Exception as exc:
        raise ApiError(500, "ingest_failed", f"the ingest stopped: {exc}") from exc
    report.seconds = time.perf_counter() - started
    return JSONResponse(report.to_dict())


async def _sse(events: AsyncIterator[IngestEvent]) -> AsyncIterator[bytes]:
    report = IngestReport()
    started = time.perf_counter()
    seq = 0
    try:
        async for event in events:
            report.add(event)
            data = {k: v for k, v in asdict(event).items() if v is not None}
            yield _message(seq, event.kind, data)
            seq += 1
    except Exception as exc:
        yield _message(seq, "error", {"code": "ingest_failed", "message": str(exc)})
        seq += 1
    report.seconds = time.perf_counter() - started
    yield _message(seq, "done", report.to_dict())


def _message(seq: int, kind: str, data: dict[str, Any]) -> bytes:
    return sse_message(json.dumps(data, ensure_ascii=False), event=kind, event_id=str(seq))
