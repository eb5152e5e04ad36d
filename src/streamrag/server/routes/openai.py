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
from streamrag.server.openai_api import (
    CHAT,
    TEXT,
    ChatCompletionRequest,
    CompletionRequest,
    Flavor,
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


def _responses(events: list[tuple[str, dict[str, Any]]], component: str) -> dict[int | str, Any]:
    return {
        **event_stream(
            "The completion; with stream=true, its chunks as server-sent events.",
            events,
            "",
            json_component=component,
        ),
        **errors(404, 502),
    }


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses=_responses(COMPLETION_EVENTS, "ChatCompletion"),
)
async def chat_completions(
    request: ChatCompletionRequest, service: ServiceDep
) -> dict[str, Any] | EventStream:
    """OpenAI-compatible chat completions; ``model`` names the knowledge base."""
    try:
        question, history = request.question_and_history()
    except ValueError as exc:
        raise ApiError(422, "invalid_messages", str(exc)) from None
    return await _complete(service, request, question, history, CHAT)


@router.post(
    "/v1/completions",
    response_model=None,
    responses=_responses(TEXT_COMPLETION_EVENTS, "TextCompletion"),
)
async def completions(
    request: CompletionRequest, service: ServiceDep
) -> dict[str, Any] | EventStream:
    """OpenAI-compatible (legacy) completions, for clients that use no chat format
    (LlamaIndex's ``OpenAILike`` by default): the prompt is the question."""
    return await _complete(service, request, request.prompt, None, TEXT)


async def _complete(
    service: Service,
    request: ChatCompletionRequest | CompletionRequest,
    question: str,
    history: list[Turn] | None,
    flavor: Flavor,
) -> dict[str, Any] | EventStream:
    """Answer ``question`` in the knowledge base ``request.model`` names, as chunks or as
    the whole completion."""
    kb = None if request.model == "default" else request.model
    run = await service.start(question, kb=kb, history=history)
    if request.stream:
        options = request.stream_options
        events = run.follow(-1, service.settings.heartbeat_s)
        chunks = completion_chunks(
            events, request.model, bool(options and options.include_usage), flavor
        )
        return EventStream(chunks, headers={"X-Run-Id": run.run_id})
    events = await service.finished(run)
    error = next((e for e in events if isinstance(e, Error)), None)
    if error is not None:
        raise failed_run(error)
    return completion(events, request.model, flavor)


@router.get("/v1/models")
async def models(service: ServiceDep) -> dict[str, Any]:
    """The knowledge bases, as OpenAI models."""
    infos = await asyncio.to_thread(list_knowledge_bases, service.settings, service.backend)
    return {
        "object": "list",
        "data": [
            {"id": info.name, "object": "model", "created": 0, "owned_by": "streamrag"}
            for info in infos
        ],
    }
