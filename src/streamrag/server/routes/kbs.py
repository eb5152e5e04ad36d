"""Knowledge bases: list, drop, search; upload documents with ingest progress as SSE; list
and delete documents.

An uploaded file is stored as ``<home>/uploads/<kb>/<hash of its name>/<cleaned name>``: its
name only ever becomes one path component, cleaned of separators and control characters, and
uploading the same name again replaces the file (unchanged content is then skipped by the
incremental ingest, changed content replaced).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import unicodedata
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
from streamrag.rag import RAG
from streamrag.server.errors import ApiError
from streamrag.server.schemas import SearchRequest
from streamrag.server.service import Service, ServiceDep
from streamrag.server.sse import EventStream, sse_message

router = APIRouter(tags=["knowledge bases"])

KbName = Annotated[
    str, Path(pattern=r"^\w[\w.-]{0,63}$", description="Knowledge base name.", max_length=64)
]
_UNSAFE = re.compile(r"[^\w.\- ()\[\]+,@]")
_MULTIPART = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                },
            }
        }
    },
}


@router.get("/v1/kbs")
async def list_kbs(service: ServiceDep) -> list[dict[str, Any]]:
    """The knowledge bases with their sizes and embedding model."""
    infos = await asyncio.to_thread(list_knowledge_bases, service.settings)
    return [
        {
            "name": info.name,
            "documents": info.documents,
            "chunks": info.chunks,
            "embed_model": info.embed_model,
            "size_bytes": info.size_bytes,
        }
        for info in infos
    ]


@router.delete("/v1/kbs/{kb}")
async def drop_kb(kb: KbName, service: ServiceDep) -> dict[str, Any]:
    """Delete a knowledge base, its documents and its uploaded files."""

    def drop() -> None:
        with service.ingest_lock(kb):
            service.forget(kb)
            drop_knowledge_base(kb, service.settings)
            shutil.rmtree(_uploads(service, kb), ignore_errors=True)

    await asyncio.to_thread(drop)
    return {"kb": kb, "dropped": True}


@router.get("/v1/kbs/{kb}/documents")
async def list_documents(kb: KbName, service: ServiceDep) -> list[dict[str, Any]]:
    """The documents of a knowledge base."""
    rag = await asyncio.to_thread(service.rag, kb)
    documents = await asyncio.to_thread(rag.kb.documents)
    return [asdict(document) for document in documents]


@router.delete("/v1/kbs/{kb}/documents/{doc_id:path}")
async def delete_document(kb: KbName, doc_id: str, service: ServiceDep) -> dict[str, Any]:
    """Remove a document (and its uploaded file)."""
    rag = await asyncio.to_thread(service.rag, kb)

    def remove() -> int:
        with service.ingest_lock(kb):
            chunks = rag.kb.remove(doc_id)
            uploaded = FilePath(doc_id)
            if uploaded.parent.parent == _uploads(service, kb):
                shutil.rmtree(uploaded.parent, ignore_errors=True)
            return chunks

    removed = await asyncio.to_thread(remove)
    return {"kb": kb, "doc_id": doc_id, "removed": removed}


@router.post("/v1/kbs/{kb}/search")
async def search(kb: KbName, request: SearchRequest, service: ServiceDep) -> list[dict[str, Any]]:
    """The best chunks for a query (hybrid, vector or BM25)."""
    rag = await asyncio.to_thread(service.rag, kb)
    where = request.filters.to_filter() if request.filters else None
    hits = await asyncio.to_thread(rag.kb.search, request.query, request.k, request.mode, where)
    return [hit.to_dict() for hit in hits]


@router.post(
    "/v1/kbs/{kb}/documents",
    openapi_extra={"requestBody": _MULTIPART},
    response_class=EventStream,
    response_model=None,
)
async def upload(
    kb: KbName,
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
        # Opening the knowledge base checks its name, before any file is written.
        rag = await asyncio.to_thread(service.rag, kb, create=True)
        names = await asyncio.to_thread(_save, _uploads(service, kb), files)
    finally:
        await form.close()
    events = _ingest(service, rag, kb, names)
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


def clean_name(filename: str) -> str:
    """A file name that is one harmless path component, keeping letters of any script."""
    name = unicodedata.normalize("NFC", filename.replace("\\", "/").rsplit("/", 1)[-1])
    name = _UNSAFE.sub("_", "".join(c for c in name if c.isprintable())).strip(" .")
    stem, suffix = os.path.splitext(name)
    return (stem[:100] or "upload") + suffix[:16]


def _uploads(service: Service, kb: str) -> FilePath:
    # Resolved like the stored paths (document ids), which a relative or linked home is not.
    return (service.settings.home / "uploads" / kb).resolve()


def _save(directory: FilePath, files: list[UploadFile]) -> dict[str, str]:
    """Store the uploads (each written whole, then renamed into place); path → given name."""
    names: dict[str, str] = {}
    for file in files:
        name = clean_name(file.filename or "")
        folder = directory / hashlib.sha256(name.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as part:
            file.file.seek(0)
            shutil.copyfileobj(file.file, part)
        target = folder / name
        os.replace(part.name, target)
        names[str(target.resolve())] = file.filename or name
    return names


async def _ingest(
    service: Service, rag: RAG, kb: str, names: dict[str, str]
) -> AsyncIterator[IngestEvent]:
    """The ingest's events as they happen; it runs in a thread that finishes regardless."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[IngestEvent | BaseException | None] = asyncio.Queue()

    def post(item: IngestEvent | BaseException | None) -> None:
        # RuntimeError: the server is shutting down; the ingest still commits.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        try:
            with service.ingest_lock(kb):
                for event in rag.kb.ingest_events(list(names)):
                    post(event)
        except BaseException as exc:  # reported to the client, never lost in the thread
            post(exc)
        finally:
            post(None)

    loop.run_in_executor(None, work)
    while (item := await queue.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield _named(item, names)


def _named(event: IngestEvent, names: dict[str, str]) -> IngestEvent:
    """The event with the uploaded file's name in place of where it is stored."""
    if event.path is None:
        return event
    return dataclasses.replace(event, path=names.get(event.path, event.path))


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
