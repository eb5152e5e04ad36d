"""An optional reranker behind an API: the ``/v1/rerank`` shape that Jina, Xinference, vLLM,
SiliconFlow and TEI (its Jina-compatible route) serve.

``POST {base_url}/rerank`` with ``{"model", "query", "documents": [text], "top_n"}`` answers
``{"results": [{"index", "relevance_score"}, ...]}`` (TEI and some others say ``score``). Off
unless ``STREAMRAG_RERANK_BASE_URL`` is set: no reranker with weights ships on PyPI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import httpx

from streamrag.config import Settings
from streamrag.errors import StreamragError


class RerankError(StreamragError):
    """The reranker could not rank (unreachable, an error status, an answer of another
    shape)."""


class Reranker(Protocol):
    def rerank(self, query: str, texts: Sequence[str]) -> list[tuple[int, float]]:
        """``(index in texts, score)`` of the texts worth keeping, best first."""
        ...


class APIReranker:
    """A reranking model behind ``{base_url}/rerank``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = base_url.rstrip("/") + "/rerank"
        self.model = model
        self._client = httpx.Client(headers=headers, timeout=timeout_s)

    def rerank(self, query: str, texts: Sequence[str]) -> list[tuple[int, float]]:
        body = {"model": self.model, "query": query, "documents": list(texts)}
        try:
            response = self._client.post(self.url, json=body)
            response.raise_for_status()
            results = response.json()["results"]
            ranked = [
                (int(item["index"]), float(item.get("relevance_score", item.get("score"))))
                for item in results
            ]
        except httpx.HTTPError as exc:
            raise RerankError(f"the reranker at {self.url} failed: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise RerankError(f"the reranker at {self.url} answered in another shape") from exc
        if any(not 0 <= index < len(texts) for index, _ in ranked):
            raise RerankError(f"the reranker at {self.url} named a document it was not sent")
        return sorted(ranked, key=lambda pair: -pair[1])

    def close(self) -> None:
        self._client.close()


def reranker_from(settings: Settings) -> APIReranker | None:
    """The configured reranker, or None (``rerank_base_url`` unset)."""
    if not settings.rerank_base_url:
        return None
    return APIReranker(
        settings.rerank_base_url, settings.rerank_model, api_key=settings.rerank_api_key
    )
