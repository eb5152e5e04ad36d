"""An external moderation classifier, asked about whole sentences of the answer.

Any OpenAI-compatible ``POST /v1/moderations`` (``{"model", "input"}`` in,
``{"results": [{"flagged": ...}]}`` out), or a chat model with a configured prompt (a
``prompt`` given: the URL is its ``/v1/chat/completions``; the prompt is the system message,
the text the user's, and a reply that begins with "yes" or "是" flags it).

:class:`SentenceGate` holds the answer's text back until a sentence is complete — or
``max_hold_chars`` characters or ``max_hold_ms`` milliseconds have gathered, whichever comes
first — so that the moderation stage can put it to the classifiers and let it out only once
it is cleared. A classifier that cannot be reached follows the rule's ``on_error``:
``fail_closed`` (the default for ``block``) treats the text as flagged, ``fail_open`` lets it
out; either way the failure is counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import httpx

from streamrag.answer.support import SentenceSplitter

OnError = Literal["fail_open", "fail_closed"]
DEFAULT_MODEL = "omni-moderation-latest"


@dataclass(frozen=True, slots=True)
class Classifier:
    """Where and how to ask (a rule's ``classifier`` settings)."""

    url: str
    model: str = DEFAULT_MODEL
    api_key: str | None = None
    timeout_s: float = 5.0
    on_error: OnError = "fail_closed"
    max_hold_chars: int = 300
    max_hold_ms: float = 2000.0
    prompt: str | None = None  # set: a chat model asked with this prompt

    async def flagged(self, client: httpx.AsyncClient, text: str) -> bool:
        """Whether the classifier flags ``text``; raises ``httpx.HTTPError`` or ``ValueError``
        when it cannot say."""
        if self.prompt is None:
            request = {"model": self.model, "input": text}
        else:
            messages = [
                {"role": "system", "content": self.prompt},
                {"role": "user", "content": text},
            ]
            request = {"model": self.model, "messages": messages, "max_tokens": 3, "temperature": 0}
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        response = await client.post(
            self.url, json=request, headers=headers, timeout=self.timeout_s
        )
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError(f"{self.url} answered {type(body).__name__}, not an object")
        if self.prompt is not None:
            try:
                reply = body["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                reply = None
            if not isinstance(reply, str):
                raise ValueError(f"{self.url} answered without a message")
            return reply.strip().lower().startswith(("yes", "是"))
        results = body.get("results")
        if not isinstance(results, list) or not results:
            raise ValueError(f"{self.url} answered without results")
        return any(bool(result.get("flagged")) for result in results)


class SentenceGate:
    """Holds text until a whole sentence, ``max_chars`` characters, or ``max_ms`` of waiting
    can be put to the classifiers."""

    def __init__(self, max_chars: int, max_ms: float) -> None:
        self.max_chars = max_chars
        self.max_ms = max_ms
        self.held = ""
        self.since: float | None = None  # when the oldest held character arrived

    def add(self, text: str) -> None:
        if text and self.since is None:
            self.since = time.monotonic()
        self.held += text

    def take(self, *, everything: bool = False) -> str:
        """The text to ask about now, taken from what is held ("": keep waiting)."""
        if not self.held:
            return ""
        if everything or len(self.held) >= self.max_chars or self.seconds_left() == 0:
            text = self.held
        else:
            done = SentenceSplitter().feed(self.held)
            text = self.held[: done[-1].close] if done else ""
        self.held = self.held[len(text) :]
        self.since = (time.monotonic() if self.held else None) if text else self.since
        return text

    def seconds_left(self) -> float | None:
        """How long the held text may still wait for more (None: nothing is held)."""
        if self.since is None:
            return None
        return max(0.0, self.max_ms / 1000 - (time.monotonic() - self.since))
