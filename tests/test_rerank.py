"""The optional reranker, against the tests' mock /v1/rerank on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamrag import KnowledgeBase
from streamrag.answer.engine import AnswerEngine
from streamrag.config import Settings
from streamrag.retrieve.rerank import APIReranker, RerankError

from conftest import HashEmbedder, ScriptedLLM, free_port

DOCS = {
    "a.md": "# 保修\n\n冰箱保修三年，电视保修两年。",
    "b.md": "# 退货\n\n七天内可以无理由退货，退货请附发票。",
    "c.md": "# 运费\n\n满九十九元包邮，偏远地区另计运费。",
}


@pytest.fixture
def reranked(settings: Settings, mock: str, tmp_path: Path) -> KnowledgeBase:
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    config = settings.model_copy(update={"rerank_base_url": mock, "rerank_model": "mock-rerank"})
    kb = KnowledgeBase("reranked", settings=config, embedder=HashEmbedder())
    assert kb.ingest([tmp_path / name for name in DOCS]).ok
    yield kb
    kb.close()


def test_the_reranker_orders_the_hits(reranked: KnowledgeBase) -> None:
    """The mock scores a passage by the share of the query's characters it holds: the hits
    the search found (in every mode) come in that order, with those scores."""
    query = "保修运费退货附发票"
    for mode in ("hybrid", "bm25", "vector"):
        hits = reranked.search(query, k=3, mode=mode)
        assert hits and [h.score for h in hits] == [
            len(set(query) & set(h.chunk.text)) / len(set(query)) for h in hits
        ]
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert hits.rerank_ms is not None and hits.degraded is None
    hits = reranked.search(query, k=3)  # the search put the warranty first
    assert hits[0].chunk.text.startswith("七天内") and hits[0].score > hits[1].score


def test_its_time_is_in_the_runs_timings(reranked: KnowledgeBase) -> None:
    async def run() -> dict[str, float]:
        events = [e async for e in AnswerEngine(reranked, ScriptedLLM(["好。"])).run("退货")]
        return events[-1].to_dict()["timings"]

    timings = asyncio.run(run())
    assert 0 < timings["rerank_ms"] <= timings["retrieve_ms"]


def test_a_reranker_that_fails_leaves_the_search_order_and_says_so(
    reranked: KnowledgeBase,
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    reranked.retriever.reranker = APIReranker(unreachable, "m", timeout_s=2)
    hits = reranked.search("退货附发票", k=3)
    assert hits and hits.degraded is not None and unreachable in hits.degraded
    with pytest.raises(RerankError, match=r"127\.0\.0\.1"):
        reranked.retriever.reranker.rerank("q", ["a"])
