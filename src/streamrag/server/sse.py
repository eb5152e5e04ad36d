"""Server-sent events: the engine's events on the wire, with heartbeats."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from starlette.responses import StreamingResponse

from streamrag.answer.events import Error, Event, Moderation, Source, Sources, Token
from streamrag.answer.prompt import heading

PING = b": ping\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_message(data: str, *, event: str | None = None, event_id: str | None = None) -> bytes:
    """One SSE message; ``data`` is a single line (JSON)."""
    head = (f"id: {event_id}\n" if event_id is not None else "") + (
        f"event: {event}\n" if event is not None else ""
    )
    return f"{head}data: {data}\n\n".encode()


def encode(event: Event) -> bytes:
    """An engine event: ``id: <run_id>:<seq>``, ``event: <type>``, ``data: <json>``."""
    return sse_message(event.to_json(), event=event.type, event_id=f"{event.run_id}:{event.seq}")


def parse_event_id(value: str | None) -> tuple[str, int] | None:
    """The run id and seq of a ``Last-Event-ID`` (``<run_id>:<seq>``); None when absent or
    not of that form."""
    if not value:
        return None
    run_id, _, seq = value.rpartition(":")
    if not run_id or not seq.isdigit():
        return None
    return run_id, int(seq)


RETRY_MS = 3000  # how long a browser's EventSource waits before it reconnects


async def sse_bytes(events: AsyncIterator[Event | None]) -> AsyncIterator[bytes]:
    """Encode events, after the reconnection delay (``retry:``); ``None`` (nothing happened
    for a while) becomes a comment heartbeat."""
    yield f"retry: {RETRY_MS}\n\n".encode()
    async for event in events:
        yield PING if event is None else encode(event)


async def plain_text(events: AsyncIterator[Event | None]) -> AsyncIterator[bytes]:
    """The answer's text as it streams, then its numbered sources, one per line."""
    sources: list[Source] = []
    async for event in events:
        if isinstance(event, Token):
            yield event.text.encode()
        elif isinstance(event, Sources):
            sources = event.sources
        elif isinstance(event, Error):
            yield f"\n[error {event.code}: {event.message}]".encode()
        elif isinstance(event, Moderation) and event.action != "mask":
            yield f"\n[stopped by moderation: {event.rule_class}]".encode()
    lines = [f"[{s.number}] {heading(s)} ({s.source})" for s in sources]
    yield ("\n\n" + "\n".join(lines) + "\n").encode() if lines else b"\n"


class EventStream(StreamingResponse):
    """``text/event-stream`` with the headers proxies need not to buffer or cache it."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[bytes],
        status_code: int = 200,  # FastAPI reads the default status for the OpenAPI spec here
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content, status_code, headers={**HEADERS, **(headers or {})})
