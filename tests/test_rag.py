"""The Python API, ``streamrag.RAG``: every surface is an adapter over the event stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamrag import RAG, KnowledgeBase
from streamrag.config import Settings

from conftest import ScriptedLLM

POLICY = "# 退货政策\n\n自签收之日起七天内可以无理由退货。\n\n## 发票\n\n退货时请附上发票。\n"


@pytest.fixture
def kb(fake_kb: KnowledgeBase, tmp_path: Path) -> KnowledgeBase:
    (tmp_path / "policy.md").write_text(POLICY, encoding="utf-8")
    assert fake_kb.ingest([tmp_path / "policy.md"]).ok
    return fake_kb


def test_stream_yields_the_answer_text_as_it_comes(kb: KnowledgeBase) -> None:
    with RAG(kb, llm=ScriptedLLM(["七天内", "可以", "退货[1]。"])) as rag:
        assert list(rag.stream("可以退货吗？")) == ["七天内", "可以", "退货[1]。"]


def test_ask_gives_the_whole_answer_with_sources_and_citations(kb: KnowledgeBase) -> None:
    with RAG(kb, llm=ScriptedLLM(["七天内可以退货", "[1]。"])) as rag:
        answer = rag.ask("可以退货吗？", session_id="s1")
        assert str(answer) == answer.text == "七天内可以退货[1]。"
        assert answer.finish_reason == "stop" and answer.session_id == "s1"
        assert answer.sources and answer.sources[0].number == 1
        [citation] = answer.citations
        assert citation.chunk_id == answer.sources[0].chunk_id and citation.offset == 7
        assert answer.timings["ttft_ms"] > 0 and answer.usage["completion_tokens"] == 2
        record = rag.history.get_run(answer.run_id)
        assert record is not None and record.answer == answer.text


def test_async_surfaces(kb: KnowledgeBase) -> None:
    async def run() -> tuple[list[str], list[str], str]:
        with RAG(kb, llm=ScriptedLLM(["a", "b"])) as rag:
            texts = [text async for text in rag.astream("退货")]
            types = [event.type async for event in rag.astream_events("退货")]
            answer = await rag.aask("退货")
            return texts, types, answer.text

    texts, types, text = asyncio.run(run())
    assert texts == ["a", "b"] and text == "ab"
    assert types[0] == "run.started" and types[-1] == "done"
    assert types.index("sources") < types.index("token")


def test_leaving_a_sync_stream_early_stops_and_records_the_run(kb: KnowledgeBase) -> None:
    llm = ScriptedLLM([f"t{i} " for i in range(500)], delay=0.01)
    with RAG(kb, llm=llm) as rag:
        stream = rag.stream_events("退货", run_id="early")
        for event in stream:
            if event.type == "token":
                break
        stream.close()
        record = rag.history.get_run("early")
        assert record is not None and record.finish_reason == "cancelled"
        assert llm.closed and llm.produced < 10


def test_a_session_carries_follow_up_questions(kb: KnowledgeBase) -> None:
    llm = ScriptedLLM(["好的"])
    settings = kb.settings.model_copy(update={"condense": "rules"})
    with RAG(kb, settings=settings, llm=llm) as rag:
        rag.ask("退货要几天？", session_id="chat")
        follow_up = rag.ask("要发票吗？", session_id="chat")
        elsewhere = rag.ask("要发票吗？", session_id="other")
    assert follow_up.standalone_question == "退货要几天？ 要发票吗？"
    assert elsewhere.standalone_question == "要发票吗？"


def test_without_arguments_the_configuration_comes_from_the_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(f"STREAMRAG_HOME={settings.home}\nSTREAMRAG_KB=handbook\n")
    monkeypatch.setenv("STREAMRAG_ANSWER_TOP_K", "2")
    monkeypatch.setenv("STREAMRAG_CONDENSE", "off")
    with RAG(llm=ScriptedLLM(["ok"])) as rag:
        assert rag.kb.name == "handbook" and rag.settings.home == settings.home
        assert (rag.engine.settings.top_k, rag.engine.settings.condense) == (2, "off")
        assert (settings.home / "kb" / "handbook.sqlite").is_file()
    assert not (settings.home / "kb" / "handbook.sqlite").exists()  # created, left empty
    assert (settings.home / "history.sqlite").is_file()
