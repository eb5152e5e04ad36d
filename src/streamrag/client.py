"""A Python client for a running ``streamrag serve``: the typed events, resumed by itself.

>>> client = streamrag.Client("http://127.0.0.1:8000")
>>> for event in client.stream("退货要几天？"):
...     if event.type == "token":
...         print(event.text, end="", flush=True)

When the connection drops mid-answer, the client reconnects to ``/v1/runs/{id}/events`` with
``Last-Event-ID``; the server sends exactly the events it missed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from httpx_sse import aconnect_sse, connect_sse

from streamrag.answer.events import Done, Event, event_from_dict
from streamrag.errors import StreamragError
from streamrag.rag import Answer

RETRYABLE = (httpx.TransportError, httpx.RemoteProtocolError)


class ServerError(StreamragError):
    """The server refused the request; ``status`` and ``code`` say why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class Client:
    """Talks to a streamrag server; ``api_key`` is sent as a Bearer token."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        max_reconnects: int = 20,
        reconnect_delay_s: float = 0.2,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._options: dict[str, Any] = {
            "base_url": self.base_url,
            "headers": headers,
            "timeout": httpx.Timeout(timeout, connect=10.0),
        }
        self.max_reconnects = max_reconnects
        self.reconnect_delay_s = reconnect_delay_s

    @staticmethod
    def _body(question: str, session_id: str | None, kb: str | None, top_k: int | None) -> dict:
        body = {"question": question, "session_id": session_id, "kb": kb, "top_k": top_k}
        return {key: value for key, value in body.items() if value is not None}

    def stream(
        self,
        question: str,
        session_id: str | None = None,
        *,
        kb: str | None = None,
        top_k: int | None = None,
    ) -> Iterator[Event]:
        """The answer's events, in order, each exactly once, across reconnects."""
        run = _Resumable(self._body(question, session_id, kb, top_k), self.max_reconnects)
        with httpx.Client(**self._options) as http:
            while True:
                method, url, body, headers = run.request()
                try:
                    with connect_sse(http, method, url, json=body, headers=headers) as source:
                        if source.response.is_error:
                            source.response.read()
                        run.connected(source.response)
                        for sse in source.iter_sse():
                            if not sse.data:  # the stream's retry: field alone
                                continue
                            event = run.received(sse.id, sse.data)
                            yield event
                            if isinstance(event, Done):
                                return
                except RETRYABLE as exc:
                    run.dropped(exc)
                else:
                    run.dropped(None)
                time.sleep(self.reconnect_delay_s * run.attempts)

    async def astream(
        self,
        question: str,
        session_id: str | None = None,
        *,
        kb: str | None = None,
        top_k: int | None = None,
    ) -> AsyncIterator[Event]:
        """:meth:`stream` for asyncio."""
        run = _Resumable(self._body(question, session_id, kb, top_k), self.max_reconnects)
        async with httpx.AsyncClient(**self._options) as http:
            while True:
                method, url, body, headers = run.request()
                try:
                    async with aconnect_sse(
                        http, method, url, json=body, headers=headers
                    ) as source:
                        if source.response.is_error:
                            await source.response.aread()
                        run.connected(source.response)
                        async for sse in source.aiter_sse():
                            if not sse.data:  # the stream's retry: field alone
                                continue
                            event = run.received(sse.id, sse.data)
                            yield event
                            if isinstance(event, Done):
                                return
                except RETRYABLE as exc:
                    run.dropped(exc)
                else:
                    run.dropped(None)
                await asyncio.sleep(self.reconnect_delay_s * run.attempts)

    def ask(self, question: str, session_id: str | None = None, **options: Any) -> Answer:
        """The whole answer."""
        return Answer.from_events(list(self.stream(question, session_id, **options)))


class _Resumable:
    """Where a streamed run is: what to request next and when to give up."""

    def __init__(self, body: dict[str, Any], max_reconnects: int) -> None:
        self.body = body
        self.max_reconnects = max_reconnects
        self.run_id: str | None = None
        self.last_id: str | None = None
        self.attempts = 0

    def request(self) -> tuple[str, str, dict[str, Any] | None, dict[str, str]]:
        """Start the run, or resume it after the last event received."""
        if self.run_id is None:
            return "POST", "/v1/chat/stream", self.body, {}
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        return "GET", f"/v1/runs/{self.run_id}/events", None, headers

    def connected(self, response: httpx.Response) -> None:
        _raise_for_status(response)
        self.run_id = response.headers.get("x-run-id", self.run_id)

    def received(self, event_id: str, data: str) -> Event:
        self.last_id = event_id
        self.attempts = 0
        return event_from_dict(json.loads(data))

    def dropped(self, error: Exception | None) -> None:
        """The connection ended before ``done``: raise unless another attempt is due."""
        if self.run_id is None:
            raise StreamragError(f"no answer stream from the server: {error or 'closed'}")
        self.attempts += 1
        if self.attempts > self.max_reconnects:
            raise StreamragError(
                f"run {self.run_id}: the connection dropped {self.max_reconnects} times in a row"
            )


def _raise_for_status(response: httpx.Response) -> None:
    if not response.is_error:
        return
    try:
        error = response.json()["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:500]
    raise ServerError(response.status_code, code, message)
