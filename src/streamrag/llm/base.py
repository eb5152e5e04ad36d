"""The LLM protocol: chat messages in, an async stream of text deltas out.

Closing the stream (``aclose()``, or cancelling the task that iterates it) must stop the
generation: an API backend closes its HTTP response, a local model stops computing tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypedDict

from streamrag.errors import StreamragError


class ChatMessage(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class LLMDelta:
    """A piece of the reply; the last ones carry the finish reason and token counts.
    ``queued`` (no text): how many answers the model gives before this one; 0 when its turn
    has come (a model that answers one at a time says so)."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    queued: int | None = None


class LLMError(StreamragError):
    """The model failed; ``code`` names how, ``retryable`` says whether trying again may help."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class LLM(Protocol):
    """A chat model that streams."""

    @property
    def name(self) -> str: ...

    def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[LLMDelta]: ...

    async def aclose(self) -> None:
        """Release what the model holds for the running event loop (HTTP connections)."""
