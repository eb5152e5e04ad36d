"""Retrieval evaluation on a ``corpus.jsonl`` + ``queries.jsonl`` set with gold passage ids.

Scoring follows ../shared/data/README.md: hit@k (any gold passage in the top k), recall@k
(share of gold passages in the top k), MRR@10. A retrieved chunk counts for the passage
(document) it came from; passages are ranked by their best chunk.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from streamrag.config import Settings
from streamrag.errors import StreamragError
from streamrag.ingest.pipeline import IngestEvent
from streamrag.kb import KnowledgeBase
from streamrag.retrieve.retriever import MODES, Mode

T = TypeVar("T")
METRIC_KEYS = ("hit@1", "hit@5", "hit@10", "recall@5", "recall@10", "mrr@10", "p50_ms", "p95_ms")
CHUNKS_PER_PASSAGE = 3  # chunks read per passage slot, so a split passage cannot crowd others out


@dataclass(frozen=True, slots=True)
class Query:
    question: str
    gold: frozenset[str]
    history: tuple[str, ...] = ()

    @property
    def search_text(self) -> str:
        """Earlier user turns give a follow-up question its subject."""
        return " ".join((*self.history[-1:], self.question))


def read_records(path: Path, make: Callable[[dict[str, Any]], T], limit: int | None) -> list[T]:
    """``make`` applied to each JSON line of ``path`` (the first ``limit``), naming a bad line."""
    records: list[T] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(make(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise StreamragError(f"{path}:{number}: not a query record ({exc})") from exc
            if limit is not None and len(records) >= limit:
                break
    return records


def load_queries(path: Path, limit: int | None = None) -> list[Query]:
    return read_records(
        path,
        lambda record: Query(
            question=record["question"],
            gold=frozenset(record["gold_ids"]),
            history=tuple(record.get("history") or ()),
        ),
        limit,
    )


def scratch_kb_name(data_dir: Path, embed_model: str) -> str:
    """The reusable knowledge base an evaluation set is ingested into."""
    model = re.sub(r"[^\w.-]", "_", embed_model)
    return f"eval-{data_dir.resolve().name}-{model}"[:64]


def prepare_kb(data_dir: Path, settings: Settings, name: str | None = None) -> KnowledgeBase:
    corpus = data_dir / "corpus.jsonl"
    if not corpus.is_file():
        raise StreamragError(f"{corpus}: no such file (expected an evaluation set folder)")
    return KnowledgeBase(name or scratch_kb_name(data_dir, settings.embed_model), settings=settings)


def ingest_corpus(kb: KnowledgeBase, data_dir: Path) -> Iterator[IngestEvent]:
    """Ingest (or bring up to date) the set's corpus in ``kb``."""
    yield from kb.ingest_events([data_dir / "corpus.jsonl"])


def score(ranked: Sequence[str], gold: frozenset[str]) -> dict[str, float]:
    first = next((rank for rank, doc in enumerate(ranked[:10], 1) if doc in gold), None)
    return {
        "hit@1": float(first == 1),
        "hit@5": float(first is not None and first <= 5),
        "hit@10": float(first is not None),
        "recall@5": len(gold.intersection(ranked[:5])) / len(gold),
        "recall@10": len(gold.intersection(ranked[:10])) / len(gold),
        "mrr@10": 0.0 if first is None else 1.0 / first,
    }


def evaluate(
    kb: KnowledgeBase,
    queries: Sequence[Query],
    modes: Sequence[Mode] = MODES,  # type: ignore[assignment]
    on_query: Callable[[], Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics per mode: the keys of :data:`METRIC_KEYS`."""
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        totals = dict.fromkeys(METRIC_KEYS[:6], 0.0)
        latencies: list[float] = []
        for query in queries:
            started = time.perf_counter()
            hits = kb.search(query.search_text, k=10 * CHUNKS_PER_PASSAGE, mode=mode)
            latencies.append((time.perf_counter() - started) * 1000)
            ranked = list(dict.fromkeys(hit.chunk.doc_id for hit in hits))[:10]
            for key, value in score(ranked, query.gold).items():
                totals[key] += value
            if on_query is not None:
                on_query()
        count = max(len(queries), 1)
        metrics = {key: round(value / count, 4) for key, value in totals.items()}
        metrics["p50_ms"] = round(statistics.median(latencies), 2) if latencies else 0.0
        metrics["p95_ms"] = round(percentile(latencies, 95), 2)
        results[mode] = metrics
    return results


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]
