"""The answer engine's own logic, with a scripted LLM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from streamrag import KnowledgeBase
from streamrag.answer.engine import AnswerEngine
from streamrag.answer.events import Event
from streamrag.llm.base import ChatMessage, LLMDelta, LLMError

from conftest import consume_then_cancel


class ScriptedLLM:
    """Streams the given deltas, optionally failing after some; records what happened."""

    name = "scripted"

    def __init__(
        self,
        deltas: Sequence[str],
        *,
        delay: float = 0.0,
        fail_after: int | None = None,
        finish: str = "stop",
    ) -> None:
        self.deltas = deltas
        self.delay = delay
        self.fail_after = fail_after
        self.finish = finish
        self.produced = 0
        self.closed = False
        self.messages: list[ChatMessage] = []

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[LLMDelta]:
        self.messages = list(messages)
        try:
            for text in self.deltas:
                if self.fail_after is not None and self.produced == self.fail_after:
                    raise LLMError("upstream_disconnected", "connection reset", retryable=True)
                await asyncio.sleep(self.delay)
                self.produced += 1
                yield LLMDelta(text=text)
            yield LLMDelta(finish_reason=self.finish)
            yield LLMDelta(prompt_tokens=42, completion_tokens=self.produced)
        finally:
            self.closed = True


@pytest.fixture
def kb(fake_kb: KnowledgeBase, tmp_path: Path) -> KnowledgeBase:
    (tmp_path / "policy.md").write_text(
        "# 退货政策\n\n自签收之日起七天内可以无理由退货。\n\n## 发票\n\n退货时请附上发票。\n",
        encoding="utf-8",
    )
    assert fake_kb.ingest([tmp_path / "policy.md"]).ok
    return fake_kb


def collect(engine: AnswerEngine, question: str) -> list[Event]:
    async def run() -> list[Event]:
        return [event async for event in engine.run(question)]

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
    assert set(done["timings"]) == {"condense_ms", "retrieve_ms", "ttft_ms", "total_ms"}
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
    token_texts = [e.to_dict()["text"] for e in events if e.type == "token"]
    first_citation = next(i for i, e in enumerate(events) if e.type == "citation")
    assert events[first_citation - 1].to_dict().get("text") == token_texts[2], (
        "the citation follows the token that closed it"
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
    assert "Question: Can I return an item?" in llm.messages[1]["content"]
