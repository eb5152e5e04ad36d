"""Chat models behind one protocol: OpenAI-compatible APIs and the bundled local model."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from streamrag.llm.base import LLM, ChatMessage, LLMDelta, LLMError

if TYPE_CHECKING:
    from streamrag.config import Settings

__all__ = [
    "LLM",
    "ChatMessage",
    "LLMDelta",
    "LLMError",
    "context_budget",
    "make_llm",
    "model_name",
]

API_CONTEXT_TOKENS = 1500  # the sources' budget of a model behind an API

_LOCAL: dict[tuple[str, int], LLM] = {}
_LOCAL_LOCK = threading.Lock()


def model_name(settings: Settings) -> str:
    """The model the settings name: the API model, or the bundled one (``default`` resolved)."""
    if settings.llm_base_url or settings.llm_model != "default":
        return settings.llm_model
    from streamrag.llm.local import DEFAULT_MODEL

    return DEFAULT_MODEL


def context_budget(settings: Settings) -> int:
    """Tokens of sources the answer model is given: ``context_tokens`` if set, else the
    bundled model's own budget, or ``API_CONTEXT_TOKENS`` for an API model."""
    if settings.context_tokens is not None:
        return settings.context_tokens
    if settings.llm_base_url:
        return API_CONTEXT_TOKENS
    from streamrag.llm.local import BUNDLED_MODELS

    model = BUNDLED_MODELS.get(model_name(settings))
    return model.context_tokens if model is not None else API_CONTEXT_TOKENS


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
    from streamrag.llm.local import LocalLlama, bundled_model

    path = bundled_model(settings.home / "models", model_name(settings))
    key = (str(path), settings.llm_threads)
    with _LOCAL_LOCK:
        if key not in _LOCAL:
            _LOCAL[key] = LocalLlama(path, n_threads=settings.llm_threads)
        return _LOCAL[key]
