import random

import pytest

from streamrag.answer.citations import CitationScanner, Marker


def scan(*deltas: str) -> list[tuple[int, int]]:
    scanner = CitationScanner()
    return [(m.number, m.offset) for delta in deltas for m in scanner.feed(delta)]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("七天内可以退货[1]。", [(1, 7)]),
        ("See [1][3].", [(1, 4), (3, 7)]),
        ("See [1, 3] and [2，4] or [5、6].", [(1, 4), (3, 4), (2, 15), (4, 15), (5, 24), (6, 24)]),
        ("全角【2】也算。", [(2, 2)]),
        ("no [citation here] and [] and [1a] and [12345]", []),
        ("nested [[2]] works", [(2, 8)]),
        ("unclosed [1 then text", []),
    ],
)
def test_markers_and_their_offsets(answer: str, expected: list[tuple[int, int]]) -> None:
    assert scan(answer) == expected
    for number, offset in expected:
        assert answer[offset] in "[【"
        assert str(number) in answer[offset : offset + 12]


def test_a_marker_split_across_tokens_is_reported_when_it_closes() -> None:
    scanner = CitationScanner()
    assert scanner.feed("退货政策") == []
    assert scanner.feed("[") == []
    assert scanner.feed("1, ") == []
    assert scanner.feed("3") == []
    assert scanner.feed("]。") == [Marker(1, 4), Marker(3, 4)]


def test_any_split_of_the_text_gives_the_same_markers() -> None:
    answer = "Returns take 7 days [1][2]. 发票请保留【3】，退款三天到账[1, 4]。[x] [5"
    whole = scan(answer)
    rng = random.Random(5)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(answer)), rng.randint(1, 12)))
        pieces = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)], strict=True)]
        assert scan(*pieces) == whole
    assert whole == [(1, 20), (2, 23), (3, 33), (1, 43), (4, 43)]


def test_sentences_end_after_their_markers_and_not_inside_a_number() -> None:
    from streamrag.answer.support import SentenceSplitter

    splitter = SentenceSplitter()
    found = []
    for delta in ["It takes 3", ".5 days.", " [1]", "[2] Refunds", " follow。【3】", "好"]:
        found += splitter.feed(delta)
    text = splitter.text
    assert [text[s.start : s.close].strip() for s in found] == [
        "It takes 3.5 days. [1][2]",
        "Refunds follow。【3】",
    ]
    last = splitter.finish()
    assert last is not None and text[last.start : last.close] == "好"


def test_a_sentence_is_supported_by_what_it_adds_to_the_question() -> None:
    from streamrag.answer.events import Source
    from streamrag.answer.support import SupportJudge

    manual = Source(1, "c1", "d", "Thread safety", "", "", 1.0, "libffi is not thread-safe.")
    judge = SupportJudge([manual], "Is libffi thread-safe?")
    assert judge.score("Yes, libffi is thread-safe [1].", 1) == 0.0  # "yes" is nowhere
    assert judge.score("libffi is not thread-safe [1].", 1) == 1.0
    assert judge.score("退款三个工作日到账", 1) == 0.0


def test_a_copied_sentence_with_a_swapped_fact_is_not_supported() -> None:
    from streamrag.answer.events import Source
    from streamrag.answer.support import SupportJudge

    text = "苏镜宇原名苏振华，1968年出生于福建省福州市，是一名画家。"
    judge = SupportJudge(
        [Source(1, "c1", "d", "苏镜宇", "", "", 1.0, text)], "苏镜宇的原名叫什么？"
    )
    assert judge.judge("苏镜宇原名苏振华，是一名画家。", 1) == (1.0, True)
    score, supported = judge.judge("苏镜宇原名李大明，是一名画家。", 1)  # a name it does not hold
    assert score >= 0.5 and not supported
    assert not judge.judge("苏镜宇原名苏振华，1972年出生。", 1)[1]  # a year it does not hold
    english = SupportJudge(
        [Source(1, "c1", "d", "", "", "", 1.0, "The Eiffel Tower was finished in Paris in 1889.")],
        "Where is the Eiffel Tower?",
    )
    assert english.judge("The Eiffel Tower was finished in Paris.", 1)[1]
    assert not english.judge("The Eiffel Tower was finished in New York.", 1)[1]
