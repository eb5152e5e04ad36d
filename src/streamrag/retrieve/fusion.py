"""Fusing the BM25 and the vector ranking into one."""

from __future__ import annotations

from collections.abc import Sequence

Ranking = Sequence[tuple[int, float]]


def fuse(keyword: Ranking, vector: Ranking, k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal rank fusion (placeholder until measured)."""
    scores: dict[int, float] = {}
    for ranking in (keyword, vector):
        for rank, (row_id, _) in enumerate(ranking, start=1):
            scores[row_id] = scores.get(row_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])
