"""Fusing the BM25 and the vector ranking into one.

A :class:`Fusion` is one of three methods. ``adaptive`` (the default, and the fallback of a
knowledge base too small to tune): each ranking's scores are min-max normalized over its
candidates, then mixed with a weight that follows how sure BM25 is of its answer: when its best
hit stands well clear of the next ones (a rare name or term matched), BM25 leads; when several
passages match about equally well (a generic question over similar passages), the vectors
lead. On the public dev sets this beat both a fixed mix and reciprocal rank fusion (figures in
the README). ``weighted``: the same normalized mix with a fixed ``vector_weight`` (0 is BM25's
order, 1 the vectors'). ``rrf``: reciprocal rank fusion. :mod:`streamrag.retrieve.tuning`
chooses one per knowledge base.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, get_args

Ranking = Sequence[tuple[str, float]]  # (chunk id, score), best first

# BM25 confidence: relative drop from its best score to the score GAP_RANK places below.
GAP_RANK = 3
GAP_UNSURE = 0.30  # at or below: vectors lead with VECTOR_WEIGHT_UNSURE
GAP_SURE = 0.50  # at or above: BM25 leads, vectors keep VECTOR_WEIGHT_SURE
VECTOR_WEIGHT_UNSURE = 0.8
VECTOR_WEIGHT_SURE = 0.4


def bm25_confidence(keyword: Ranking) -> float:
    """0 when BM25's best hits are all alike, 1 when its best one stands out."""
    if len(keyword) <= GAP_RANK:
        return 1.0 if keyword else 0.0
    best, later = keyword[0][1], keyword[GAP_RANK][1]
    gap = (best - later) / best if best > 0 else 0.0
    return min(1.0, max(0.0, (gap - GAP_UNSURE) / (GAP_SURE - GAP_UNSURE)))


def vector_weight(keyword: Ranking) -> float:
    """The share of the vector score in the fused score for this query."""
    confidence = bm25_confidence(keyword)
    return VECTOR_WEIGHT_UNSURE + (VECTOR_WEIGHT_SURE - VECTOR_WEIGHT_UNSURE) * confidence


RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al., 2009)

Method = Literal["adaptive", "weighted", "rrf"]
METHODS: tuple[str, ...] = get_args(Method)


@dataclass(frozen=True, slots=True)
class Fusion:
    """How a hybrid search mixes its BM25 and vector rankings (see the module)."""

    method: Method = "adaptive"
    vector_weight: float | None = None  # ``weighted`` only

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown fusion {self.method!r}; choose one of {', '.join(METHODS)}")
        weighted = self.method == "weighted"
        if weighted != (self.vector_weight is not None):
            raise ValueError("a vector_weight goes with the 'weighted' fusion, and only with it")
        if weighted and not 0 <= self.vector_weight <= 1:  # type: ignore[operator]
            raise ValueError(f"vector_weight must be in [0, 1], got {self.vector_weight}")

    def fuse(self, keyword: Ranking, vector: Ranking) -> list[tuple[str, float]]:
        """One ranking from both, best first: ``(chunk id, fused score)``."""
        if self.method == "rrf":
            return reciprocal_rank_fusion(keyword, vector)
        weight = self.vector_weight if self.vector_weight is not None else vector_weight(keyword)
        return fuse(keyword, vector, weight)

    def __str__(self) -> str:
        if self.vector_weight is None:
            return self.method
        return f"{self.method} (vector weight {self.vector_weight:g})"

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_json(cls, text: str) -> Fusion:
        return cls(**json.loads(text))


DEFAULT_FUSION = Fusion()


def fuse(keyword: Ranking, vector: Ranking, weight: float | None = None) -> list[tuple[str, float]]:
    """One ranking from both, best first: ``(chunk id, fused score in [0, 1])``, the vector
    score weighing ``weight`` (default: :func:`vector_weight`); ties keep the better of their
    ranks in either list."""
    if weight is None:
        weight = vector_weight(keyword)
    keyword_norm = _min_max(keyword)
    vector_norm = _min_max(vector)
    rank: dict[str, int] = {}
    for ranking in (keyword, vector):
        for place, (chunk_id, _) in enumerate(ranking):
            rank[chunk_id] = min(place, rank.get(chunk_id, place))
    fused = {
        chunk_id: weight * vector_norm.get(chunk_id, 0.0)
        + (1 - weight) * keyword_norm.get(chunk_id, 0.0)
        for chunk_id in rank
    }
    return sorted(fused.items(), key=lambda item: (-item[1], rank[item[0]]))


def reciprocal_rank_fusion(keyword: Ranking, vector: Ranking) -> list[tuple[str, float]]:
    """One ranking from both by the sum of ``1 / (RRF_K + rank)``, best first."""
    fused: dict[str, float] = {}
    for ranking in (keyword, vector):
        for place, (chunk_id, _) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1 / (RRF_K + place)
    return sorted(fused.items(), key=lambda item: -item[1])


def _min_max(ranking: Ranking) -> dict[str, float]:
    if not ranking:
        return {}
    scores = [score for _, score in ranking]
    low, high = min(scores), max(scores)
    if high == low:
        return dict.fromkeys((chunk_id for chunk_id, _ in ranking), 1.0)
    return {chunk_id: (score - low) / (high - low) for chunk_id, score in ranking}
