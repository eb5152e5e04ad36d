"""Chat models behind one protocol: OpenAI-compatible APIs and the bundled local model."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from streamrag.llm.base import LLM, ChatMessage, LLMDelta, LLMError

if TYPE_CHECKING:
    from streamrag.config import Settings

__all__ = ["LLM", "ChatMessage", "LLMDelta", "LLMError", "make_llm"]

_LOCAL: dict[tuple[str, int], LLM] = {}
_LOCAL_LOCK = threading.Lock()


def make_llm(settings: Settings) -> LLM:
    """The API model when ``llm_base_url`` is set, else the bundled model ``llm_model``
    names (``default``: the 0.5B one), loaded once per process."""
    if settings.llm_base_url:
        from streamrag.llm.openai_compat import OpenAIChat

        return OpenAIChat(
            settings.llm_model,
            settings.llm_base_url,
            settings.llm_api_key,
            timeout=settings.llm_timeout_s,
        )
    from streamrag.llm.local import DEFAULT_MODEL, LocalLlama, bundled_model

    name = DEFAULT_MODEL if settings.llm_model == "default" else settings.llm_model
    path = bundled_model(settings.home / "models", name)
    key = (str(path), settings.llm_threads)
    with _LOCAL_LOCK:
        if key not in _LOCAL:
            _LOCAL[key] = LocalLlama(path, n_threads=settings.llm_threads)
        return _LOCAL[key]
