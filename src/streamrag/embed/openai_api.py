"""Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint, through the ``openai`` SDK."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamrag.embed.base import normalize


class OpenAIEmbedder:
    """A remote embedding model; its dimension is learned from the first answer."""

    def __init__(
        self, model: str, base_url: str, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        from openai import OpenAI

        self.model = model
        self._client = OpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout)
        self._dim: int | None = None

    @property
    def name(self) -> str:
        return f"api:{self.model}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.embed_query("dimension probe")
        assert self._dim is not None
        return self._dim

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self._dim or 0), dtype=np.float32)
        response = self._client.embeddings.create(model=self.model, input=list(texts))
        ordered = sorted(response.data, key=lambda item: item.index)
        matrix = normalize(np.array([item.embedding for item in ordered], dtype=np.float32))
        self._dim = matrix.shape[1]
        return matrix

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]
