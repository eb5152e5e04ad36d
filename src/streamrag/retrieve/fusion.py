"""Fusing the BM25 and the vector ranking into one.

Each ranking's scores are min-max normalized over its candidates, then mixed with a weight that
follows how sure BM25 is of its answer: when its best hit stands well clear of the next ones
(a rare name or term matched), BM25 leads; when several passages match about equally well (a
generic question over similar passages), the vectors lead. On the public dev sets this beat
both a fixed mix and reciprocal rank fusion (figures in the README).
"""

from __future__ import annotations

from collections.abc import Sequence

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


def fuse(keyword: Ranking, vector: Ranking) -> list[tuple[str, float]]:
    """One ranking from both, best first: ``(chunk id, fused score in [0, 1])``; ties keep
    the better of their ranks in either list."""
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


def _min_max(ranking: Ranking) -> dict[str, float]:
    if not ranking:
        return {}
    scores = [score for _, score in ranking]
    low, high = min(scores), max(scores)
    if high == low:
        return dict.fromkeys((chunk_id for chunk_id, _ in ranking), 1.0)
    return {chunk_id: (score - low) / (high - low) for chunk_id, score in ranking}
