"""Answer evaluation: ask every question of a set and score the streamed answers.

Scoring follows ../shared/data/README.md: an answer is correct when every group of
``answer_groups`` has an alternative contained in the normalized answer (NFKC, lower case,
white space collapsed). Citation precision is the share of valid citations whose chunk comes
from a gold passage. Time to first token and tokens/s come from each run's ``done`` event.
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streamrag.answer.events import Done, RunStarted
from streamrag.eval.retrieval import percentile, read_records
from streamrag.history.base import Turn
from streamrag.rag import RAG


@dataclass(frozen=True, slots=True)
class AnswerQuery:
    question: str
    answer_groups: tuple[tuple[str, ...], ...]
    gold: frozenset[str]
    history: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AnswerResult:
    """One question's outcome, as the report lists it."""

    question: str
    answer: str
    correct: bool
    citations: int
    gold_citations: int
    supported_citations: int  # the model's or inferred, that their source supports
    finish_reason: str
    ttft_ms: float | None
    total_ms: float
    prompt_tokens: int
    completion_tokens: int
    run_id: str

    @property
    def tokens_per_s(self) -> float | None:
        if self.ttft_ms is None or self.completion_tokens < 2 or self.total_ms <= self.ttft_ms:
            return None
        return (self.completion_tokens - 1) / ((self.total_ms - self.ttft_ms) / 1000)


def load_answer_queries(path: Path, limit: int | None = None) -> list[AnswerQuery]:
    def make(record: dict[str, Any]) -> AnswerQuery:
        groups = record.get("answer_groups") or [record["answers"]]
        return AnswerQuery(
            question=record["question"],
            answer_groups=tuple(tuple(group) for group in groups),
            gold=frozenset(record.get("gold_ids") or ()),
            history=tuple(record.get("history") or ()),
        )

    return read_records(path, make, limit)


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def is_correct(answer: str, groups: Sequence[Sequence[str]]) -> bool:
    normalized = normalize(answer)
    return all(any(normalize(alt) in normalized for alt in group) for group in groups)


def answer_one(rag: RAG, query: AnswerQuery) -> AnswerResult:
    history = [Turn(question) for question in query.history] or None
    started: RunStarted | None = None
    done: Done | None = None
    for event in rag.stream_events(query.question, history=history):
        if isinstance(event, RunStarted):
            started = event
        elif isinstance(event, Done):
            done = event
    assert started is not None and done is not None
    cited_docs = [rag.kb.store.get_chunk(c.chunk_id) for c in done.citations]
    return AnswerResult(
        question=query.question,
        answer=done.answer,
        correct=is_correct(done.answer, query.answer_groups),
        citations=len(done.citations),
        gold_citations=sum(
            chunk is not None and chunk.doc_id in query.gold for chunk in cited_docs
        ),
        supported_citations=sum(bool(c.supported) for c in done.citations),
        finish_reason=done.finish_reason,
        ttft_ms=done.timings.get("ttft_ms"),
        total_ms=done.timings.get("total_ms", 0.0),
        prompt_tokens=done.usage.get("prompt_tokens", 0),
        completion_tokens=done.usage.get("completion_tokens", 0),
        run_id=started.run_id,
    )


def evaluate_answers(
    rag: RAG,
    queries: Sequence[AnswerQuery],
    on_result: Callable[[AnswerResult], Any] | None = None,
) -> tuple[dict[str, Any], list[AnswerResult]]:
    """The metrics and each question's result."""
    results = []
    for query in queries:
        result = answer_one(rag, query)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return summarize(results, rag.engine.llm.name), results


def summarize(results: Sequence[AnswerResult], model: str) -> dict[str, Any]:
    count = max(len(results), 1)
    citations = sum(r.citations for r in results)
    ttfts = [r.ttft_ms for r in results if r.ttft_ms is not None]
    speeds = [s for r in results if (s := r.tokens_per_s) is not None]
    return {
        "model": model,
        "questions": len(results),
        "answer_hit_rate": round(sum(r.correct for r in results) / count, 4),
        "citation_precision": round(sum(r.gold_citations for r in results) / citations, 4)
        if citations
        else None,
        "answers_with_citations": round(sum(r.citations > 0 for r in results) / count, 4),
        "answers_with_supported_citations": round(
            sum(r.supported_citations > 0 for r in results) / count, 4
        ),
        "prompt_tokens_p50": statistics.median(r.prompt_tokens for r in results)
        if results
        else None,
        "ttft_p50_ms": round(statistics.median(ttfts), 1) if ttfts else None,
        "ttft_p95_ms": round(percentile(ttfts, 95), 1) if ttfts else None,
        "tokens_per_s_p50": round(statistics.median(speeds), 2) if speeds else None,
        "finish_reasons": dict(Counter(r.finish_reason for r in results)),
    }


def result_dict(result: AnswerResult) -> dict[str, Any]:
    return {**asdict(result), "tokens_per_s": result.tokens_per_s}
