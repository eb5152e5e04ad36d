"""The OpenAI-compatible surface: chat completions and (legacy) completions, streamed or not,
as an adapter over the engine's events.

``model`` names the knowledge base. In a chat, earlier messages are the conversation history
and the last user message with text is the question; a completion's prompt is the question.
Sources and citations ride in extra fields (``sources`` on the first chunk and on the
completion, ``citations`` on the chunk whose text closed a marker and on the completion), so
OpenAI clients work unchanged and can still show them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import Field

from streamrag.answer.events import Citation, Done, Error, Event, Sources, Token, Usage
from streamrag.history.base import Turn
from streamrag.server.schemas import Body, KbName
from streamrag.server.sse import PING, sse_message

# OpenAI's finish_reason for ours; anything else ends as "stop"
FINISH = {"length": "length", "moderated": "content_filter"}


class ChatMessageIn(Body):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            parts = (p.get("text") for p in self.content if p.get("type") == "text")
            return "".join(text for text in parts if isinstance(text, str))
        return self.content or ""


# One definition of "has text" for the schema (ECMA regex) and the code (Python re): the
# union of what each calls white space.
_BLANK = "\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_HAS_TEXT = f"[^{_BLANK}]"
_TEXT = {"type": "string", "pattern": _HAS_TEXT}
_USER_MESSAGE_WITH_TEXT = {  # the question: what question_and_history needs
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"const": "user"},
        "content": {
            "anyOf": [
                _TEXT,
                {
                    "type": "array",
                    "contains": {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {"type": {"const": "text"}, "text": _TEXT},
                    },
                },
            ]
        },
    },
}


class StreamOptions(Body):
    include_usage: bool = False


class ChatCompletionRequest(Body):
    """The OpenAI chat completions request; ``model`` is the knowledge base."""

    model: KbName = Field(description="Knowledge base name ('default' for the configured one).")
    messages: list[ChatMessageIn] = Field(
        min_length=1,
        max_length=200,
        description="The conversation; its last user message with text is the question.",
        json_schema_extra={"contains": _USER_MESSAGE_WITH_TEXT},
    )
    stream: bool = False
    stream_options: StreamOptions | None = None

    def question_and_history(self) -> tuple[str, list[Turn]]:
        """The last user message with text, and the user/assistant exchanges before it."""
        asked = [
            i
            for i, m in enumerate(self.messages)
            if m.role == "user" and re.search(_HAS_TEXT, m.text())
        ]
        if not asked:
            raise ValueError("no user message with text: there is no question")
        turns: list[Turn] = []
        for message in self.messages[: asked[-1]]:
            if message.role == "user":
                turns.append(Turn(message.text()))
            elif message.role == "assistant" and turns and not turns[-1].answer:
                turns[-1] = Turn(turns[-1].question, message.text())
        return self.messages[asked[-1]].text(), turns


class CompletionRequest(Body):
    """The OpenAI (legacy) completions request: the prompt is the question."""

    model: KbName = Field(description="Knowledge base name ('default' for the configured one).")
    prompt: str = Field(min_length=1, pattern=_HAS_TEXT, description="The question.")
    stream: bool = False
    stream_options: StreamOptions | None = None


@dataclass(frozen=True, slots=True)
class Flavor:
    """How one OpenAI endpoint spells a completion: chat (``message`` / ``delta``) or text."""

    chat: bool
    prefix: str  # of the id
    whole: str  # the object of the whole completion
    chunk: str  # the object of a streamed chunk

    def choice(
        self, text: str, finish_reason: str | None = None, *, opening: bool = False
    ) -> dict[str, Any]:
        """A streamed choice (the chat's opening one names the role)."""
        if not self.chat:
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        delta = {"role": "assistant", "content": text} if opening else {"content": text}
        return {
            "index": 0,
            "delta": delta if text or opening else {},
            "finish_reason": finish_reason,
        }

    def whole_choice(self, answer: str, finish_reason: str) -> dict[str, Any]:
        if not self.chat:
            return {"index": 0, "text": answer, "logprobs": None, "finish_reason": finish_reason}
        message = {"role": "assistant", "content": answer}
        return {"index": 0, "message": message, "finish_reason": finish_reason}


CHAT = Flavor(True, "chatcmpl-", "chat.completion", "chat.completion.chunk")
TEXT = Flavor(False, "cmpl-", "text_completion", "text_completion")


def _data(payload: dict[str, Any]) -> bytes:
    return sse_message(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))


async def completion_chunks(
    events: AsyncIterator[Event | None], model: str, include_usage: bool, flavor: Flavor = CHAT
) -> AsyncIterator[bytes]:
    """Streamed chunks as SSE lines, then ``data: [DONE]``. A run that fails ends the stream
    with an ``error`` object instead, as OpenAI's own streams do (its SDK raises it)."""
    created = int(time.time())
    usage: dict[str, int] | None = None

    def chunk(run_id: str, **fields: Any) -> bytes:
        head = {"id": flavor.prefix + run_id, "object": flavor.chunk, "created": created}
        return _data({**head, "model": model, **fields})

    async for event in events:
        if event is None:
            yield PING
        elif isinstance(event, Sources):
            sources = [asdict(source) for source in event.sources]
            choice = flavor.choice("", opening=True)
            yield chunk(event.run_id, choices=[choice], sources=sources)
        elif isinstance(event, Token):
            yield chunk(event.run_id, choices=[flavor.choice(event.text)])
        elif isinstance(event, Citation):
            cited = {"number": event.number, "chunk_id": event.chunk_id, "offset": event.offset}
            yield chunk(event.run_id, choices=[], citations=[cited])
        elif isinstance(event, Error):
            error = {"message": event.message, "type": "upstream_error", "code": event.code}
            yield _data({"error": error})
            return
        elif isinstance(event, Usage) and include_usage:
            usage = {  # sent after the finish_reason chunk, as OpenAI does
                "prompt_tokens": event.prompt_tokens,
                "completion_tokens": event.completion_tokens,
                "total_tokens": event.prompt_tokens + event.completion_tokens,
            }
        elif isinstance(event, Done):
            yield chunk(
                event.run_id,
                choices=[flavor.choice("", FINISH.get(event.finish_reason, "stop"))],
                citations=[asdict(c) for c in event.citations],
                streamrag={
                    "finish_reason": event.finish_reason,
                    "timings": event.timings,
                    "moderation": [asdict(m) for m in event.moderation],
                },
            )
            if usage is not None:
                yield chunk(event.run_id, choices=[], usage=usage)
    yield sse_message("[DONE]")


def completion(events: list[Event], model: str, flavor: Flavor = CHAT) -> dict[str, Any]:
    """The whole completion object from a finished run's events."""
    done = next(e for e in events if isinstance(e, Done))
    sources = next((e.sources for e in events if isinstance(e, Sources)), [])
    usage = done.usage
    return {
        "id": flavor.prefix + done.run_id,
        "object": flavor.whole,
        "created": int(time.time()),
        "model": model,
        "choices": [flavor.whole_choice(done.answer, FINISH.get(done.finish_reason, "stop"))],
        "usage": {
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0),
            "total_tokens": usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0),
        },
        "sources": [asdict(source) for source in sources],
        "citations": [asdict(c) for c in done.citations],
        "streamrag": {"finish_reason": done.finish_reason, "timings": done.timings},
    }
