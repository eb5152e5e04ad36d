"""The OpenAI-compatible chat completions and models (``model`` = knowledge base)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from streamrag.answer.events import Error
from streamrag.kb import list_knowledge_bases
from streamrag.server.errors import ApiError, failed_run
from streamrag.server.openai_api import ChatCompletionRequest, completion, completion_chunks
from streamrag.server.openapi import COMPLETION_EVENTS, errors, event_stream
from streamrag.server.service import ServiceDep
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
    kb = None if request.model == "default" else request.model
    run = await service.start(question, kb=kb, history=history)
    if request.stream:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        chunks = completion_chunks(
            run.follow(-1, service.settings.heartbeat_s), request.model, include_usage
        )
        return EventStream(chunks, headers={"X-Run-Id": run.run_id})
    events = await service.finished(run)
    error = next((e for e in events if isinstance(e, Error)), None)
    if error is not None:
        raise failed_run(error)
    return completion(events, request.model)


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
