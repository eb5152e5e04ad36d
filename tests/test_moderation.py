"""Moderation rules, detectors and the streaming filter (streamrag.moderation)."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from streamrag.answer.citations import cite
from streamrag.answer.engine import AnswerEngine
from streamrag.answer.events import (
    Citation,
    Done,
    Event,
    Moderation,
    ModerationCount,
    RunStarted,
    Token,
)
from streamrag.backends import open_backend
from streamrag.ingest.pipeline import IngestReport
from streamrag.kb import KnowledgeBase
from streamrag.moderation import RulesError, TextFilter, check_text, load_rules, moderation
from streamrag.moderation.detectors import cn_id_valid, luhn_valid
from streamrag.moderation.rules import parse_rules

from conftest import HashEmbedder, ScriptedLLM, free_port, stats

RULES = """
refusal = "这个问题我不能回答。"

[[rule]]
class = "insult"
words = ["敏感词", "坏蛋", "idiot", "ass"]
action = "mask"

[[rule]]
class = "pii"
pii = ["cn_mobile", "cn_id_card", "bank_card", "email"]
action = "mask"

[[rule]]
class = "internal"
regex = "ACME-\\\\d{6}"
action = "block"
"""


@pytest.fixture
def rules(tmp_path: Path):
    path = tmp_path / "rules.toml"
    path.write_text(RULES, encoding="utf-8")
    return load_rules(path)


def stream(rules, text: str, seed: int) -> tuple[list[str], TextFilter]:
    """``text`` fed in random pieces: what was released after each, and the filter."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 12))))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    answer = TextFilter(rules.on("output"))
    shown = [answer.feed(piece) for piece in pieces]
    shown.append(answer.finish())
    return shown, answer


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("这是敏感词。", "这是＊＊＊。"),
        ("这是敏 感 词。", "这是＊＊＊＊＊。"),
        ("这是敏-感-詞。", "这是＊＊＊＊＊。"),  # traditional 詞, hyphens inside
        ("You ＩＤＩＯＴ!", "You ＊＊＊＊＊!"),  # full-width, upper case
        ("a classic idiotic pass", "a classic idiotic pass"),  # not whole words
        ("call 138 0013 8000 now", "call ＊＊＊＊＊＊＊＊＊＊＊＊＊ now"),
        ("电话12800138000", "电话12800138000"),  # no mobile number starts with 12
        ("证件11010519491231002X。", "证件＊＊＊＊＊＊＊＊＊＊＊＊＊＊＊＊＊＊。"),
        ("证件110105194912310021。", "证件110105194912310021。"),  # wrong check character
        ("卡 4111 1111 1111 1111.", "卡 ＊＊＊＊＊＊＊＊＊＊＊＊＊＊＊＊＊＊＊."),
        ("卡 4111 1111 1111 1112.", "卡 4111 1111 1111 1112."),  # fails the Luhn check
        ("2 4111 1111 1111 1111 021年", "2 " + "＊" * 19 + " 021年"),  # the card, not " 021"
        ("号 4111111111111111 2张", "号 " + "＊" * 16 + " 2张"),
        ("mail a.b+c@example.co.uk!", "mail " + "＊" * len("a.b+c@example.co.uk") + "!"),
        ("版本 3.14.15 发布", "版本 3.14.15 发布"),
    ],
)
def test_whole_texts_are_masked_by_what_they_hold(rules, text: str, masked: str) -> None:
    assert check_text(rules.on("output"), text)[0] == masked
    for seed in range(20):  # and the same, streamed in random pieces
        shown, _ = stream(rules, text, seed)
        assert "".join(shown) == masked


def test_nothing_forbidden_is_ever_released_and_the_hold_is_bounded(rules) -> None:
    text = "先说敏感词，再说 idiot，电话13800138000，邮箱 x@y.cn，完。"
    for seed in range(200):
        shown, _ = stream(rules, text, seed)
        released = ""
        for piece in shown:
            released += piece
            for forbidden in ("敏感", "感词", "idiot", "13800138000", "x@y.cn"):
                assert forbidden not in released
        assert released == check_text(rules.on("output"), text)[0]


def test_a_word_list_holds_back_at_most_its_longest_entry_less_one(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('[[rule]]\nclass = "w"\nwords = ["一二三四"]\naction = "mask"\n', "utf-8")
    answer = TextFilter(load_rules(path).on("output"))
    assert answer.feed("零一二三") == "零"  # "一二三" may become the entry
    assert answer.feed("五") == "一二三五"
    assert answer.held_chars_max == 3


def test_a_block_stops_the_text_and_names_its_class(rules) -> None:
    answer = TextFilter(rules.on("output"))
    assert answer.feed("code ACME-12") == "code "
    assert answer.feed("3456 and more") == ""
    assert answer.blocked is not None and answer.blocked.rule_class == "internal"
    assert answer.feed("after") == "" and answer.finish() == ""


def test_checksums() -> None:
    assert luhn_valid("4111 1111 1111 1111") and not luhn_valid("4111 1111 1111 1112")
    assert cn_id_valid("11010519491231002X") and not cn_id_valid("110105194912310021")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rule]\n", "rules.toml: not valid TOML: "),
        (
            'refusal = "x"\n\n[[rule]]\nclass = "r"\nregex = "(unclosed"\naction = "block"\n',
            "rules.toml:3: rule 'r': invalid regex '(unclosed'",
        ),
        ('[[rule]]\nclass = "p"\npii = ["ssn"]\naction = "mask"\n', "rules.toml:1: rule 'p': "),
        (
            '[[rule]]\nclass = "r"\nwords = ["x"]\naction = "refuse"\non = ["output"]\n',
            "refuse answers a question instead of the model: it applies to input only",
        ),
        ('[[rule]]\nclass = "r"\nwords = ["x"]\naction = "delete"\n', "action must be one of"),
        ('[[rule]]\nclass = "r"\naction = "mask"\n', "say what to look for"),
        ('[[rule]]\nclass = "r"\nwords_file = "gone.txt"\naction = "mask"\n', "gone.txt"),
        ('[[rule]]\nclass = "r"\nregex = "a*"\naction = "mask"\n', "matches empty text"),
        ('colour = "red"\n', "unknown setting 'colour'"),
    ],
)
def test_a_broken_rules_file_is_named_with_its_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert message in str(caught.value).replace(str(tmp_path) + "/", "")


def test_a_words_file_beside_the_rules_and_ten_thousand_entries(tmp_path: Path) -> None:
    words = [f"词{i:05d}" for i in range(10_000)]
    (tmp_path / "words.txt").write_text("# a comment\n" + "\n".join(words), encoding="utf-8")
    rules = parse_rules(
        '[[rule]]\nclass = "big"\nwords_file = "words.txt"\naction = "mask"\n',
        tmp_path / "rules.toml",
    )
    assert check_text(rules.on("output"), "有词09999和词1")[0] == "有＊＊＊＊＊＊和词1"


# -- in the engine -------------------------------------------------------------------------


@pytest.fixture
def kb(fake_kb, tmp_path: Path):
    (tmp_path / "policy.md").write_text(
        "# 退货政策\n\n自签收之日起七天内可以无理由退货。\n", encoding="utf-8"
    )
    assert fake_kb.ingest([tmp_path / "policy.md"]).ok
    return fake_kb


def answer(kb, rules, llm, question: str = "可以退货吗？") -> list[Event]:
    backend = open_backend(kb.settings)
    engine = AnswerEngine(
        kb, llm, transformers=(moderation(rules), cite), memory=backend.history,
        runlog=backend.history,
    )  # fmt: skip

    async def run() -> list[Event]:
        return [event async for event in engine.run(question)]

    try:
        return asyncio.run(run())
    finally:
        backend.close()


def test_a_masked_answer_keeps_its_citation_offsets(kb, rules) -> None:
    llm = ScriptedLLM(["客服电话 138", "0013 8000", "，七天内可退[1]。"])
    events = answer(kb, rules, llm)
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop"
    assert done.answer == "客服电话 " + "＊" * len("1380013 8000") + "，七天内可退[1]。"
    assert "".join(e.text for e in events if isinstance(e, Token)) == done.answer
    [citation] = [e for e in events if isinstance(e, Citation)]
    assert done.answer[citation.offset : citation.offset + 3] == "[1]"
    [fired] = [e for e in events if isinstance(e, Moderation)]
    assert (fired.target, fired.rule_class, fired.action) == ("output", "pii", "mask")
    assert "13800138000" not in json.dumps([e.to_dict() for e in events], ensure_ascii=False)
    assert done.moderation == [ModerationCount("output", "pii", "mask", 1)]
    assert done.timings["holdback_chars_max"] >= 3
    record = open_backend(kb.settings).history.get_run(done.run_id)
    assert record.answer == done.answer and record.moderation == done.moderation


def test_a_block_closes_the_model_stream_and_ends_moderated(kb, rules) -> None:
    llm = ScriptedLLM(["内部代号 ACME-", "123456", " 是", "机密", "。"] + ["多"] * 50)
    events = answer(kb, rules, llm)
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "moderated"
    assert done.answer == "内部代号 " and "ACME" not in done.answer
    # the token after the one that completed it says the match is whole: then the stream stops
    assert llm.closed and llm.produced == 3
    [fired] = [e for e in events if isinstance(e, Moderation)]
    assert (fired.rule_class, fired.action) == ("internal", "block")
    assert [e.type for e in events][-2:] == ["moderation", "done"]


def test_a_question_is_masked_before_anything_reads_it(kb, rules) -> None:
    llm = ScriptedLLM(["好的。"])
    events = answer(kb, rules, llm, "我的手机13800138000，可以退货吗？")
    started = events[0]
    assert (
        isinstance(started, RunStarted)
        and started.question == "我的手机＊＊＊＊＊＊＊＊＊＊＊，可以退货吗？"
    )
    assert "13800138000" not in json.dumps(llm.messages, ensure_ascii=False)
    assert events[1].type == "moderation"
    record = open_backend(kb.settings).history.get_run(events[-1].run_id)
    assert "13800138000" not in record.question


def test_a_refused_question_never_reaches_the_model(kb, tmp_path: Path) -> None:
    path = tmp_path / "refuse.toml"
    path.write_text(
        'refusal = "这个问题我不能回答。"\n[[rule]]\nclass = "politics"\n'
        'words = ["某话题"]\naction = "refuse"\non = ["input"]\n',
        encoding="utf-8",
    )
    llm = ScriptedLLM(["不该出现"])
    events = answer(kb, load_rules(path), llm, "说说某 话 题？")
    assert [e.type for e in events] == ["run.started", "moderation", "token", "done"]
    assert events[-1].answer == "这个问题我不能回答。" and events[-1].finish_reason == "moderated"
    assert llm.messages == [] and not llm.produced


# -- documents at ingest -------------------------------------------------------------------


def test_documents_are_checked_at_ingest_and_reported_each(settings, tmp_path: Path) -> None:
    rules = tmp_path / "docs.toml"
    rules.write_text(
        '[[rule]]\nclass = "pii"\npii = ["cn_mobile"]\naction = "mask"\non = ["documents"]\n'
        '[[rule]]\nclass = "banned"\nwords = ["禁书"]\naction = "block"\non = ["documents"]\n',
        encoding="utf-8",
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "contact.txt").write_text("客服电话 13800138000，工作日在线。", "utf-8")
    (docs / "bad.txt").write_text("这里有一本禁 书。", "utf-8")
    (docs / "plain.txt").write_text("七天内可以退货。", "utf-8")
    with KnowledgeBase("k", settings=settings, embedder=HashEmbedder()) as kb:
        assert kb.ingest([docs]).ok  # no rules for documents yet: all three go in
        kb.set_moderation_rules(rules)
        events = list(kb.ingest_events([docs]))
        report = IngestReport.collect(events)
        assert report.failed == [
            (str((docs / "bad.txt").resolve()), "refused by moderation rule 'banned' (block)")
        ]
        texts = [c.text for batch in kb.store.iter_chunks() for c in batch]
        assert texts == ["客服电话 ＊＊＊＊＊＊＊＊＊＊＊，工作日在线。", "七天内可以退货。"]
        assert len(report.ingested) == 2  # new rules: every document is checked again
        notes = {Path(e.path).name: e.reason for e in events if e.kind == "file" and e.reason}
        assert notes["contact.txt"] == "masked by moderation: pii ×1"
        assert kb.ingest([docs]).unchanged and not kb.ingest([docs]).ingested
        kb.set_moderation_rules(None)
        assert not kb.moderation_rules().rules


# -- an external classifier ----------------------------------------------------------------


def classifier_rules(tmp_path: Path, url: str, action: str = "block", extra: str = "") -> object:
    path = tmp_path / "classifier.toml"
    path.write_text(
        f'[[rule]]\nclass = "toxic"\nclassifier = "{url}"\naction = "{action}"\n'
        f'on = ["input", "output"]\n{extra}',
        encoding="utf-8",
    )
    return load_rules(path)


def test_a_classifier_clears_whole_sentences_and_stops_at_a_flagged_one(
    kb, mock: str, tmp_path: Path
) -> None:
    stats(mock, "reset=1")
    rules = classifier_rules(tmp_path, f"{mock}/moderations")
    llm = ScriptedLLM(["好的，", "七天内", "可以退货。", "这句", "有坏话", "。", "后面的话。"])
    events = answer(kb, rules, llm)
    tokens = [e.text for e in events if isinstance(e, Token)]
    assert tokens == ["好的，七天内可以退货。"]  # one sentence, let out once it was cleared
    assert events[-1].finish_reason == "moderated"
    assert [(e.target, e.rule_class) for e in events if isinstance(e, Moderation)] == [
        ("output", "toxic")
    ]
    assert stats(mock)["moderated"] == ["可以退货吗？", "好的，七天内可以退货。", "这句有坏话。"]
    assert events[-1].timings["classifier_ms_max"] > 0


def test_a_classifier_holds_at_most_its_cap_and_masks_a_flagged_piece(
    kb, mock: str, tmp_path: Path
) -> None:
    rules = classifier_rules(tmp_path, f"{mock}/moderations", "mask", "max_hold_chars = 6\n")
    llm = ScriptedLLM(["一二三四五六七八", "九坏话十一二三"])
    events = answer(kb, rules, llm)
    assert [e.text for e in events if isinstance(e, Token)] == [
        "一二三四五六七八",
        "＊＊＊＊＊＊＊",
    ]
    assert events[-1].finish_reason == "stop"


@pytest.mark.parametrize(
    ("on_error", "finish"), [("fail_closed", "moderated"), ("fail_open", "stop")]
)
def test_an_unreachable_classifier_follows_its_policy(
    kb, tmp_path: Path, on_error: str, finish: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/moderations"
    rules = classifier_rules(tmp_path, url, extra=f'on_error = "{on_error}"\n')
    events = answer(kb, rules, ScriptedLLM(["你好。"]))
    done = events[-1]
    assert done.finish_reason == finish and done.timings["classifier_errors"] >= 1
    assert (done.answer == "") == (on_error == "fail_closed")


def test_a_classifier_asks_about_held_text_once_it_waited_max_hold_ms(
    kb, mock: str, tmp_path: Path
) -> None:
    stats(mock, "reset=1")
    rules = classifier_rules(tmp_path, f"{mock}/moderations", extra="max_hold_ms = 50\n")
    llm = ScriptedLLM(["一二三", "四五六", "七八九"], delay=0.4)  # no sentence ever ends
    events = answer(kb, rules, llm, "问")
    # each piece is let out on its own, 50 ms after it came, before the next one arrives
    assert [e.text for e in events if isinstance(e, Token)] == ["一二三", "四五六", "七八九"]
    assert stats(mock)["moderated"] == ["问", "一二三", "四五六", "七八九"]


def test_a_chat_model_with_a_prompt_can_be_the_classifier(kb, mock: str, tmp_path: Path) -> None:
    stats(mock, "reset=1")
    prompt = 'classifier_prompt = "Is this text abusive? Answer yes or no."\n'
    rules = classifier_rules(tmp_path, f"{mock}/chat/completions", extra=prompt)
    llm = ScriptedLLM(["七天内可以退货。", "这句有坏话。"])
    events = answer(kb, rules, llm)
    assert [e.text for e in events if isinstance(e, Token)] == ["七天内可以退货。"]
    assert events[-1].finish_reason == "moderated"
    assert stats(mock)["moderated"] == ["可以退货吗？", "七天内可以退货。", "这句有坏话。"]


@pytest.mark.parametrize("body", [{"choices": []}, {"choices": [None]}, {"results": []}, []])
def test_a_classifier_answer_without_a_verdict_is_its_error(body: object) -> None:
    import httpx

    from streamrag.moderation.classifier import Classifier

    async def ask() -> bool:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
        async with httpx.AsyncClient(transport=transport) as client:
            prompt = "Abusive? yes or no." if isinstance(body, dict) and "choices" in body else None
            return await Classifier("http://127.0.0.1:9/v1/x", prompt=prompt).flagged(client, "t")

    with pytest.raises(ValueError, match="answered"):
        asyncio.run(ask())
