"""Embedders: the bundled local models and OpenAI-compatible endpoints, chosen by settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamrag.embed.base import Embedder, normalize
from streamrag.errors import ConfigError

if TYPE_CHECKING:
    from streamrag.config import Settings

LOCAL_MODELS = ("e5-small", "use-m3")

__all__ = ["LOCAL_MODELS", "Embedder", "make_embedder", "normalize"]


def make_embedder(settings: Settings) -> Embedder:
    """The embedder the settings name: an API model when a base URL is set, else a local one."""
    if settings.embed_base_url:
        from streamrag.embed.openai_api import OpenAIEmbedder

        return OpenAIEmbedder(settings.embed_model, settings.embed_base_url, settings.embed_api_key)
    if settings.embed_model == "e5-small":
        from streamrag.embed.local import E5SmallEmbedder

        return E5SmallEmbedder(settings.embed_threads)
    if settings.embed_model == "use-m3":
        from streamrag.embed.local import USEM3Embedder

        return USEM3Embedder(settings.embed_threads)
    raise ConfigError(
        f"unknown local embedding model {settings.embed_model!r}: choose one of "
        f"{', '.join(LOCAL_MODELS)}, or set STREAMRAG_EMBED_BASE_URL to use an API model"
    )
