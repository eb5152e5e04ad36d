import re

import pytest

from streamrag.retrieve.fusion import DEFAULT_FUSION, Fusion, bm25_confidence, fuse, vector_weight


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


def test_reciprocal_rank_fusion_sums_inverse_ranks() -> None:
    fused = Fusion("rrf").fuse([("a", 9.0), ("b", 1.0)], [("b", 0.9), ("c", 0.8)])
    assert [chunk_id for chunk_id, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_a_weighted_fusion_uses_its_weight_and_round_trips() -> None:
    keyword = [("a", 10.0), ("b", 0.0)]
    vector = [("b", 0.9), ("a", 0.1)]
    assert Fusion("weighted", 0.0).fuse(keyword, vector)[0][0] == "a"
    assert Fusion("weighted", 1.0).fuse(keyword, vector)[0][0] == "b"
    fusion = Fusion("weighted", 0.35)
    assert Fusion.from_json(fusion.to_json()) == fusion
    assert str(fusion) == "weighted (vector weight 0.35)"
    assert Fusion.from_json(DEFAULT_FUSION.to_json()) == DEFAULT_FUSION


@pytest.mark.parametrize(
    ("method", "weight", "message"),
    [
        ("mean", None, "unknown fusion 'mean'"),
        ("weighted", None, "a vector_weight goes with"),
        ("rrf", 0.5, "a vector_weight goes with"),
        ("weighted", 1.5, "must be in [0, 1]"),
    ],
)
def test_a_bad_fusion_is_refused(method: str, weight: float | None, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Fusion(method, weight)  # type: ignore[arg-type]
