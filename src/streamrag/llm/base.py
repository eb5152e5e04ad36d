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
    """A piece of the reply; the last ones carry the finish reason and token counts."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


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
