"""The answer engine's own logic, with a scripted LLM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from streamrag import KnowledgeBase
from streamrag.answer.citations import cite
from streamrag.answer.engine import AnswerEngine, AnswerSettings
from streamrag.answer.events import Event, Token, Usage
from streamrag.answer.run import UNNUMBERED, RunState
from streamrag.backends import History, open_backend
from streamrag.config import Settings
from streamrag.history.base import Turn
from streamrag.llm.base import ChatMessage, LLMDelta

from conftest import ScriptedLLM, consume_then_cancel


@pytest.fixture
def kb(fake_kb: KnowledgeBase, tmp_path: Path) -> KnowledgeBase:
    (tmp_path / "policy.md").write_text(
        "# 退货政策\n\n自签收之日起七天内可以无理由退货。\n\n## 发票\n\n退货时请附上发票。\n",
        encoding="utf-8",
    )
    assert fake_kb.ingest([tmp_path / "policy.md"]).ok
    return fake_kb


def collect(engine: AnswerEngine, question: str, **options: object) -> list[Event]:
    async def run() -> list[Event]:
        return [event async for event in engine.run(question, **options)]  # type: ignore[arg-type]

    return asyncio.run(run())


def test_sources_come_before_tokens_and_the_answer_is_the_tokens(kb: KnowledgeBase) -> None:
    llm = ScriptedLLM(["七天内", "可以退货", "[1]。"])
    events = collect(AnswerEngine(kb, llm), "可以退货吗？")
    types = [e.type for e in events]
    assert types[:4] == ["run.started", "status", "sources", "status"]
    assert types.index("sources") < types.index("token")
    assert types[-2:] == ["usage", "done"]
    assert [e.seq for e in events] == list(range(len(events)))
    assert len({e.run_id for e in events}) == 1
    done = events[-1].to_dict()
    tokens = [e.to_dict()["text"] for e in events if e.type == "token"]
    assert done["answer"] == "".join(tokens) == "七天内可以退货[1]。"
    assert done["finish_reason"] == "stop"
    assert done["usage"] == {"prompt_tokens": 42, "completion_tokens": 3}
    assert set(done["timings"]) == {
        "condense_ms",
        "retrieve_ms",
        "prompt_ms",
        "ttft_ms",
        "total_ms",
    }
    sources = events[2].to_dict()["sources"]
    assert [s["number"] for s in sources] == list(range(1, len(sources) + 1))
    prompt = llm.messages[-1]["content"]
    assert "[1]" in prompt and "可以退货吗？" in prompt and "资料" in llm.messages[0]["content"]


def test_citations_across_token_splits_and_markers_without_a_source(kb: KnowledgeBase) -> None:
    llm = ScriptedLLM(["七天内可以退货[", "1", "]，请附发票【2", "】[9]。"])
    events = collect(AnswerEngine(kb, llm), "退货要发票吗")
    sources = events[2].to_dict()["sources"]
    citations = [e.to_dict() for e in events if e.type == "citation"]
    assert [(c["number"], c["offset"]) for c in citations] == [(1, 7), (2, 15)]
    assert [c["chunk_id"] for c in citations] == [s["chunk_id"] for s in sources[:2]]
    positions = [e.seq for e in events if e.type in ("token", "citation")]
    assert positions == sorted(positions)
    kinds = [e.type for e in events]
    assert kinds[-5:] == ["token", "citation", "citation", "usage", "done"], (
        "the citations come once their sentence is over"
    )
    done = events[-1].to_dict()
    assert done["invalid_citations"] == 1
    assert [c["number"] for c in done["citations"]] == [1, 2]


def test_closing_the_event_stream_stops_the_llm(kb: KnowledgeBase) -> None:
    llm = ScriptedLLM([f"t{i} " for i in range(1000)], delay=0.001)

    async def run() -> None:
        stream = AnswerEngine(kb, llm).run("退货")
        tokens = 0
        async for event in stream:
            tokens += event.type == "token"
            if tokens == 3:
                break
        await stream.aclose()

    asyncio.run(run())
    assert llm.closed and llm.produced <= 4


def test_cancelling_the_consuming_task_stops_the_llm(kb: KnowledgeBase) -> None:
    llm = ScriptedLLM([f"t{i} " for i in range(1000)], delay=0.005)
    consume_then_cancel(AnswerEngine(kb, llm).run("退货"), after=0.2)
    assert llm.closed and llm.produced < 200


def test_an_llm_failure_gives_error_then_done_with_the_partial_answer(kb: KnowledgeBase) -> None:
    llm = ScriptedLLM(["七天", "内可以", "退货"], fail_after=2)
    events = collect(AnswerEngine(kb, llm), "退货")
    assert [e.type for e in events][-2:] == ["error", "done"]
    error = events[-2].to_dict()
    assert error["code"] == "upstream_disconnected" and error["retryable"] is True
    done = events[-1].to_dict()
    assert done["finish_reason"] == "error" and done["answer"] == "七天内可以"


def test_a_reply_cut_by_the_token_limit_says_so(kb: KnowledgeBase) -> None:
    events = collect(AnswerEngine(kb, ScriptedLLM(["七天"], finish="length")), "退货")
    assert events[-1].to_dict()["finish_reason"] == "length"


def test_english_questions_get_the_english_prompt(kb: KnowledgeBase) -> None:
    llm = ScriptedLLM(["ok"])
    collect(AnswerEngine(kb, llm), "Can I return an item?")
    assert "Answer only from the numbered sources" in llm.messages[0]["content"]
    assert [m["role"] for m in llm.messages] == ["system", "user", "assistant", "user"]
    assert "capital of France" in llm.messages[1]["content"], "the worked example"
    assert llm.messages[-1]["content"].endswith("Question: Can I return an item?")


def test_configured_instructions_replace_the_default_wording(kb: KnowledgeBase) -> None:
    llm = ScriptedLLM(["ok"])
    settings = AnswerSettings(system_prompts={"zh": "只用资料回答，像客服一样礼貌。"})
    collect(AnswerEngine(kb, llm, settings), "可以退货吗？")
    assert llm.messages[0]["content"] == "只用资料回答，像客服一样礼貌。"
    collect(AnswerEngine(kb, llm, settings), "Can I return it?")
    assert "Answer only from the numbered sources" in llm.messages[0]["content"]


@pytest.fixture
def history(backend_settings: Settings) -> Iterator[History]:
    """The run log and memory of each backend (the engine records runs there)."""
    backend = open_backend(backend_settings)
    yield backend.history
    backend.close()


def recorded_engine(
    kb: KnowledgeBase, llm: ScriptedLLM, history: History, **settings: object
) -> AnswerEngine:
    return AnswerEngine(
        kb,
        llm,
        AnswerSettings(**settings),
        memory=history,
        runlog=history,  # type: ignore[arg-type]
    )


def test_every_run_is_recorded_before_done(kb: KnowledgeBase, history: History) -> None:
    llm = ScriptedLLM(["七天内", "可以退货", "[1]。"])
    events = collect(recorded_engine(kb, llm, history), "可以退货吗？", session_id="s1")
    done = events[-1].to_dict()
    record = history.get_run(events[0].run_id)
    assert record is not None
    assert record.session_id == "s1" and record.kb == "test" and record.model == "scripted"
    assert record.question == record.standalone_question == "可以退货吗？"
    assert record.answer == done["answer"] and record.finish_reason == "stop"
    assert record.retrieved == done["sources"] and record.retrieved
    assert [c.number for c in record.citations] == [1]
    assert record.usage == {"prompt_tokens": 42, "completion_tokens": 3}
    assert record.timings == done["timings"] and record.error is None
    [session] = history.sessions()
    assert (session.session_id, session.title, session.runs) == ("s1", "可以退货吗？", 1)


def test_a_cancelled_run_is_recorded_with_its_partial_answer(
    kb: KnowledgeBase, history: History
) -> None:
    llm = ScriptedLLM([f"t{i} " for i in range(1000)], delay=0.005)
    consume_then_cancel(recorded_engine(kb, llm, history).run("退货", run_id="r1"), after=0.3)
    record = history.get_run("r1")
    assert record is not None and record.finish_reason == "cancelled"
    assert record.answer.startswith("t0 t1 ") and len(record.answer.split()) == llm.produced
    assert "total_ms" in record.timings and "ttft_ms" in record.timings


def test_closing_the_stream_records_the_run_as_cancelled(
    kb: KnowledgeBase, history: History
) -> None:
    async def run() -> None:
        stream = recorded_engine(kb, ScriptedLLM(["a", "b", "c", "d"]), history).run(
            "退货", run_id="r2"
        )
        async for event in stream:
            if event.type == "token":
                break
        await stream.aclose()

    asyncio.run(run())
    record = history.get_run("r2")
    assert record is not None and (record.finish_reason, record.answer) == ("cancelled", "a")


def test_a_failed_run_is_recorded_with_its_error(kb: KnowledgeBase, history: History) -> None:
    events = collect(
        recorded_engine(kb, ScriptedLLM(["七天", "内", "x"], fail_after=2), history), "退货"
    )
    record = history.get_run(events[0].run_id)
    assert record is not None and record.finish_reason == "error" and record.answer == "七天内"
    assert record.error == {"code": "upstream_disconnected", "message": "connection reset"}


def test_a_retrieval_failure_is_an_error_event_not_an_exception(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ConnectionError("embedding endpoint refused the connection")

    monkeypatch.setattr(kb, "search", broken)
    llm = ScriptedLLM(["never"])
    events = collect(AnswerEngine(kb, llm), "退货")
    assert [e.type for e in events][-2:] == ["error", "done"]
    assert "embedding endpoint refused" in events[-2].to_dict()["message"]
    assert events[-1].to_dict()["finish_reason"] == "error" and not llm.messages


class CondensingLLM(ScriptedLLM):
    """Rewrites when asked to condense (recording the request), then answers."""

    def __init__(self, rewrite: str, **kwargs: object) -> None:
        super().__init__(["好的[1]"], **kwargs)  # type: ignore[arg-type]
        self.rewrite = rewrite
        self.condense_requests: list[str] = []

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[LLMDelta]:
        if "后续问题" in messages[-1]["content"] or "Follow-up" in messages[-1]["content"]:
            self.condense_requests.append(messages[-1]["content"])
            yield LLMDelta(text=self.rewrite)
            return
        async for delta in super().stream(messages, max_tokens=max_tokens, temperature=temperature):
            yield delta


def test_a_follow_up_is_condensed_with_the_stored_history(
    kb: KnowledgeBase, history: History
) -> None:
    llm = CondensingLLM("退货时需要附上发票吗？")
    engine = recorded_engine(kb, llm, history, condense="llm")
    collect(engine, "退货需要什么？", session_id="s")
    assert not llm.condense_requests, "a first question is not condensed"
    events = collect(engine, "那发票呢？", session_id="s")
    [request] = llm.condense_requests
    assert "用户：退货需要什么？" in request and "助手：好的[1]" in request
    assert "后续问题：那发票呢？" in request
    statuses = [e.to_dict() for e in events if e.type == "status"]
    assert [s["stage"] for s in statuses] == ["condensing", "retrieving", "generating"]
    assert statuses[1]["standalone_question"] == "退货时需要附上发票吗？"
    assert "问题: 退货时需要附上发票吗？" in llm.messages[-1]["content"]
    assert events[-1].to_dict()["standalone_question"] == "退货时需要附上发票吗？"
    assert [t.question for t in history.history("s")] == ["退货需要什么？", "那发票呢？"]


def test_a_self_contained_follow_up_is_not_sent_to_the_model(
    kb: KnowledgeBase, history: History
) -> None:
    llm = CondensingLLM("unused")
    collect(
        recorded_engine(kb, llm, history, condense="llm"),
        "发票丢了以后还能不能退货？",
        history=[Turn("退货要几天？", "七天")],
    )
    assert not llm.condense_requests


@pytest.mark.parametrize("reply", ["", "\n\n", "很长" * 200])
def test_an_unusable_rewrite_falls_back_to_the_rules(
    kb: KnowledgeBase, history: History, reply: str
) -> None:
    llm = CondensingLLM(reply)
    engine = recorded_engine(kb, llm, history, condense="llm")
    events = collect(engine, "它呢？", history=[Turn("退货要几天？")])
    assert events[-1].to_dict()["standalone_question"] == "退货要几天？ 它呢？"


def test_condense_modes_rules_and_off(kb: KnowledgeBase, history: History) -> None:
    turns = [Turn("How long is the return window?", "Seven days [1].")]
    for mode, expected in [
        ("rules", "How long is the return window? And for refunds?"),
        ("off", "And for refunds?"),
    ]:
        llm = CondensingLLM("unused")
        engine = recorded_engine(kb, llm, history, condense=mode)
        events = collect(engine, "And for refunds?", history=turns)
        assert events[-1].to_dict()["standalone_question"] == expected
        assert not llm.condense_requests


def test_the_rules_carry_the_topic_back_to_the_last_standalone_question(
    kb: KnowledgeBase, history: History
) -> None:
    """The default: no model asked; a follow-up of a follow-up keeps the first topic."""
    llm = CondensingLLM("unused")
    turns = [Turn("冰箱保修多久？"), Turn("退货要几天？"), Turn("那运费呢？")]
    events = collect(recorded_engine(kb, llm, history), "谁来出？", history=turns)
    assert events[-1].to_dict()["standalone_question"] == "退货要几天？ 那运费呢？ 谁来出？"
    assert not llm.condense_requests


def test_the_history_window_is_bounded_in_tokens(kb: KnowledgeBase, history: History) -> None:
    turns = [Turn(f"第{i}个问题：退货规则{i}是什么？", "回答" * 20) for i in range(30)]
    llm = CondensingLLM("退货规则是什么？")
    engine = recorded_engine(kb, llm, history, history_tokens=300, condense="llm")
    collect(engine, "它呢？", history=turns)
    [request] = llm.condense_requests
    assert "第29个问题" in request and "第28个问题" in request and "第0个问题" not in request
    assert len(request) < 1200


def test_sources_stop_at_the_context_budget(kb: KnowledgeBase) -> None:
    everything = collect(AnswerEngine(kb, ScriptedLLM(["a"])), "退货 发票")[2].to_dict()
    assert len(everything["sources"]) >= 2
    tight = AnswerEngine(kb, ScriptedLLM(["a"]), AnswerSettings(context_tokens=1))
    assert len(collect(tight, "退货 发票")[2].to_dict()["sources"]) == 1


async def shout(events: AsyncIterator[Event], run: RunState) -> AsyncIterator[Event]:
    """A transformer that holds the tokens back two at a time and upper-cases them."""
    held: list[str] = []
    async for event in events:
        if isinstance(event, Token):
            held.append(event.text)
            if len(held) < 2:
                continue
            event = Token(run_id=run.run_id, seq=UNNUMBERED, text="".join(held).upper())
            held.clear()
        elif held and isinstance(event, Usage):
            yield Token(run_id=run.run_id, seq=UNNUMBERED, text="".join(held).upper())
        yield event


def test_transformers_change_what_every_surface_and_the_record_get(
    kb: KnowledgeBase, history: History
) -> None:
    """A post-processing stage is one transformer: its output is numbered, cited, recorded,
    and is the done's answer; the model's own tokens go nowhere."""
    llm = ScriptedLLM(["a", "b", "[1]", "c", "d"])
    engine = AnswerEngine(kb, llm, memory=history, runlog=history, transformers=[shout, cite])
    events = collect(engine, "退货")
    assert [e.seq for e in events] == list(range(len(events)))
    tokens = [e.to_dict()["text"] for e in events if e.type == "token"]
    assert tokens == ["AB", "[1]C", "D"]
    [citation] = [e.to_dict() for e in events if e.type == "citation"]
    assert citation["offset"] == 2 and [e.type for e in events][-3:] == [
        "citation",
        "usage",
        "done",
    ]
    done = events[-1].to_dict()
    record = history.get_run(events[0].run_id)
    assert done["answer"] == "AB[1]CD" and record is not None and record.answer == "AB[1]CD"
    assert [c.offset for c in record.citations] == [2]


def test_closing_the_stream_closes_every_transformer_and_the_model(kb: KnowledgeBase) -> None:
    """A client that goes away closes the engine's stream: the links below it close at once,
    not when the garbage collector finds them."""
    closed: list[str] = []

    async def watched(events: AsyncIterator[Event], run: RunState) -> AsyncIterator[Event]:
        try:
            async for event in events:
                yield event
        finally:
            closed.append("transformer")

    llm = ScriptedLLM([f"t{i} " for i in range(1000)])

    async def run() -> None:
        stream = AnswerEngine(kb, llm, transformers=[watched, cite]).run("退货")
        async for event in stream:
            if event.type == "token":
                break
        await stream.aclose()
        assert closed == ["transformer"] and llm.closed and llm.produced < 1000

    asyncio.run(run())


def test_each_sentence_is_checked_against_its_sources_as_it_ends(kb: KnowledgeBase) -> None:
    """A cited source that holds the sentence supports it, one that does not is flagged, a
    sentence without a marker that one source clearly holds gets an inferred citation; each
    comes as its sentence ends (a marker after the full stop still belongs to it)."""
    answer = ["自签收之日起七天内", "可以无理由退货。", "[1]", "火星上", "可以种土豆", "[1]。"]
    llm = ScriptedLLM([*answer, "退货时请", "附上发票。"])
    events = collect(AnswerEngine(kb, llm), "自签收之日起七天内可以无理由退货吗？")
    by_number = {s.number: s for s in events[2].sources}  # type: ignore[attr-defined]
    assert "七天内" in by_number[1].text and "发票" not in by_number[1].text
    kinds = [e.type for e in events]
    citations = [e.to_dict() for e in events if e.type == "citation"]
    assert [(c["number"], c["supported"], c["inferred"]) for c in citations[:2]] == [
        (1, True, False),
        (1, False, False),
    ]
    first = kinds.index("citation")
    assert events[first - 1].to_dict()["text"] == "火星上", "judged when the next one began"
    assert citations[0]["score"] == 1.0 and citations[1]["score"] < 0.5
    [inferred] = citations[2:]
    assert (
        inferred["inferred"]
        and inferred["supported"]
        and inferred["offset"]
        == len("自签收之日起七天内可以无理由退货。[1]火星上可以种土豆[1]。退货时请附上发票")
    )
    assert "发票" in by_number[inferred["number"]].text
    done = events[-1].to_dict()
    assert [c["inferred"] for c in done["citations"]] == [False, False, True]
