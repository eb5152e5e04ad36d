import pytest

from streamrag.retrieve.fusion import bm25_confidence, fuse, vector_weight


def test_bm25_leads_when_its_best_hit_stands_out() -> None:
    keyword = [(1, 20.0), (2, 8.0), (3, 7.0), (4, 6.0)]  # a rare term matched once
    vector = [(2, 0.90), (3, 0.89), (1, 0.88)]
    assert bm25_confidence(keyword) == 1.0
    assert vector_weight(keyword) == pytest.approx(0.4)
    assert [row for row, _ in fuse(keyword, vector)][:2] == [1, 2]


def test_vectors_lead_when_bm25_hits_are_alike() -> None:
    keyword = [(1, 10.0), (2, 9.8), (3, 9.5), (4, 9.4)]
    vector = [(3, 0.92), (1, 0.85), (2, 0.84), (4, 0.80)]
    assert bm25_confidence(keyword) == 0.0
    assert vector_weight(keyword) == pytest.approx(0.8)
    assert fuse(keyword, vector)[0][0] == 3


def test_candidates_from_one_side_only_and_empty_sides() -> None:
    fused = fuse([(7, 3.0)], [(8, 0.9), (9, 0.5)])
    assert {row for row, _ in fused} == {7, 8, 9}
    assert fuse([], [(8, 0.9), (9, 0.5)])[0] == (8, pytest.approx(0.8))
    assert fuse([], []) == []
    assert all(0.0 <= score <= 1.0 for _, score in fused)
