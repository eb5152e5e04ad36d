"""The OpenAI-compatible chat completions, completions and models (``model`` = knowledge
base)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from streamrag.answer.events import Error
from streamrag.history.base import Turn
from streamrag.kb import list_knowledge_bases
from streamrag.server.errors import ApiError, failed_run
from streamrag.server.live import LiveRun
from streamrag.server.openai_api import (
    CHAT,
    TEXT,
    ChatCompletionRequest,
    CompletionRequest,
    Flavor,
    StreamOptions,
    completion,
    completion_chunks,
)
from streamrag.server.openapi import (
    COMPLETION_EVENTS,
    TEXT_COMPLETION_EVENTS,
    errors,
    event_stream,
)
from streamrag.server.service import Service, ServiceDep
from streamrag.server.sse import EventStream

router = APIRouter(tags=["openai"])


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={
        **event_stream(
            "The completion; with stream=true, its chunks as server-sent events.",
            COMPLETION_EVENTS,
            "",
            json_component="ChatCompletion",
        ),
        **errors(404, 502),
    },
)
async def chat_completions(
    request: ChatCompletionRequest, service: ServiceDep
) -> dict[str, Any] | EventStream:
    """OpenAI-compatible chat completions; ``model`` names the knowledge base."""
    try:
        question, history = request.question_and_history()
    except ValueError as exc:
        raise ApiError(422, "invalid_messages", str(exc)) from None
    run = await _start(service, request.model, question, history)
    return await _answer(service, run, request.model, request.stream, request.stream_options, CHAT)


@router.post(
    "/v1/completions",
    response_model=None,
    responses={
        **event_stream(
            "The completion; with stream=true, its chunks as server-sent events.",
            TEXT_COMPLETION_EVENTS,
            "",
            json_component="TextCompletion",
        ),
        **errors(404, 502),
    },
)
async def completions(
    request: CompletionRequest, service: ServiceDep
) -> dict[str, Any] | EventStream:
    """OpenAI-compatible (legacy) completions, for clients that use no chat format
    (LlamaIndex's ``OpenAILike`` by default): the prompt is the question."""
    run = await _start(service, request.model, request.prompt, None)
    return await _answer(service, run, request.model, request.stream, request.stream_options, TEXT)


async def _start(
    service: Service, model: str, question: str, history: list[Turn] | None
) -> LiveRun:
    return await service.start(question, kb=None if model == "default" else model, history=history)


async def _answer(
    service: Service,
    run: LiveRun,
    model: str,
    stream: bool,
    options: StreamOptions | None,
    flavor: Flavor,
) -> dict[str, Any] | EventStream:
    if stream:
        include_usage = bool(options and options.include_usage)
        events = run.follow(-1, service.settings.heartbeat_s)
        chunks = completion_chunks(events, model, include_usage, flavor)
        return EventStream(chunks, headers={"X-Run-Id": run.run_id})
    events = await service.finished(run)
    error = next((e for e in events if isinstance(e, Error)), None)
    if error is not None:
        raise failed_run(error)
    return completion(events, model, flavor)


@router.get("/v1/models")
async def models(service: ServiceDep) -> dict[str, Any]:
    """The knowledge bases, as OpenAI models."""
    infos = await asyncio.to_thread(list_knowledge_bases, service.settings)
    return {
        "object": "list",
        "data": [
            {"id": info.name, "object": "model", "created": 0, "owned_by": "streamrag"}
            for info in infos
        ],
    }
