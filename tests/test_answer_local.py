"""The whole answer path for real: bundled e5-small retrieval on the sample knowledge base and
the bundled Qwen2.5-Coder-0.5B answering, through ``streamrag.RAG``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamrag import RAG, KnowledgeBase
from streamrag.answer.events import Done, Sources, Token
from streamrag.llm.local import LocalLlama

from conftest import serving


@pytest.fixture(scope="module")
def rag(sample_kb: KnowledgeBase, local_llm: LocalLlama) -> Iterator[RAG]:
    settings = sample_kb.settings.model_copy(update={"temperature": 0.0})
    yield RAG(sample_kb, settings=settings, llm=local_llm)


def test_tokens_stream_and_the_answer_cites_a_retrieved_source(rag: RAG) -> None:
    arrivals: list[float] = []
    sources: Sources | None = None
    done: Done | None = None
    for event in rag.stream_events("How long is the warranty for a refrigerator?"):
        if isinstance(event, Sources):
            sources = event
        elif isinstance(event, Token):
            assert sources is not None, "sources come before the first token"
            arrivals.append(time.monotonic())
        elif isinstance(event, Done):
            done = event
    assert sources is not None and done is not None and done.finish_reason == "stop"
    assert len(arrivals) >= 5
    assert arrivals[-1] - arrivals[0] > 0.2, "tokens came in one burst, not as generated"
    assert "three years" in done.answer.lower()
    retrieved = {source.chunk_id: source for source in sources.sources}
    assert done.citations, f"no citation in {done.answer!r}"
    for citation in done.citations:
        cited = retrieved[citation.chunk_id]
        assert cited.number == citation.number and cited.source.endswith("warranty.md")
    assert done.usage["prompt_tokens"] > 100 and done.usage["completion_tokens"] == len(arrivals)


def test_a_chinese_question_gets_a_chinese_answer_from_its_source(rag: RAG) -> None:
    answer = rag.ask("退款多久能到账？")
    assert "三个工作日" in answer.text
    assert answer.sources[0].source.endswith("returns-policy.md")


def test_the_served_surfaces_stream_the_bundled_models_answer(
    sample_kb: KnowledgeBase, local_llm: LocalLlama
) -> None:
    """SSE, the OpenAI SDK and ``streamrag.Client`` against a real server with the real model."""
    import openai

    from streamrag import Client

    settings = sample_kb.settings.model_copy(
        update={"kb": "sample", "answer_top_k": 2, "max_tokens": 40, "temperature": 0.0}
    )
    question = "How long is the warranty for a refrigerator?"
    with serving(settings, local_llm) as client:
        response = client.post("/v1/chat/stream", json={"question": question})
        kinds = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
        assert kinds.index("sources") < kinds.index("token") and kinds[-1] == "done"
        assert kinds.count("token") >= 3

        sdk = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="unused")
        chunks = list(
            sdk.chat.completions.create(
                model="sample", messages=[{"role": "user", "content": question}], stream=True
            )
        )
        assert chunks[0].model_extra["sources"]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len(text.strip()) > 5

        completion = sdk.completions.create(model="sample", prompt=question, max_tokens=40)
        assert completion.choices[0].text.strip() and completion.model_extra["sources"]

        answer = Client(str(client.base_url)).ask(question)
        assert answer.text.strip() and answer.sources
        assert answer.finish_reason in ("stop", "length")


def test_an_answer_waiting_for_the_busy_model_says_so_at_once(
    sample_kb: KnowledgeBase, local_llm: LocalLlama
) -> None:
    """The bundled model answers one question at a time: a question asked while it is busy
    streams a ``waiting`` status with its place at once, then ``generating`` when its turn
    comes, then its tokens."""
    import asyncio
    import json
    import threading

    holding, release = threading.Event(), threading.Event()

    def busy() -> None:  # a long answer that has the model until released
        async def run() -> None:
            stream = local_llm.stream(
                [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
                max_tokens=400,
                temperature=0,
            )
            async for delta in stream:
                if delta.text:
                    holding.set()
                    if release.is_set():
                        break
            await stream.aclose()

        asyncio.run(run())

    settings = sample_kb.settings.model_copy(
        update={"kb": "sample", "answer_top_k": 2, "max_tokens": 20, "temperature": 0.0}
    )
    with serving(settings, local_llm) as client:
        other = threading.Thread(target=busy)
        other.start()
        assert holding.wait(120)
        seen: list[dict] = []
        question = {"question": "How do I reset the router?"}
        with client.stream("POST", "/v1/chat/stream", json=question) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["type"] == "status" and seen[-1]["stage"] == "waiting":
                        release.set()
        other.join()
    stages = [(e["stage"], e["queue_position"]) for e in seen if e["type"] == "status"]
    assert stages[-2:] == [("waiting", 1), ("generating", None)], stages
    kinds = [e["type"] for e in seen]
    last_status = len(kinds) - 1 - kinds[::-1].index("status")
    assert last_status < kinds.index("token")


def test_the_bundled_models_answer_is_moderated_as_it_streams(
    sample_kb: KnowledgeBase, local_llm: LocalLlama, tmp_path: Path
) -> None:
    """The real model's words pass the moderation stage on the way to every surface: the
    warranty's "three years" is masked in the SSE tokens and the OpenAI SDK's text (the
    sources' text is the documents', which ``documents`` rules check at ingest)."""
    import openai

    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nclass = "term"\nwords = ["three years"]\naction = "mask"\n', encoding="utf-8"
    )
    settings = sample_kb.settings.model_copy(
        update={"kb": "sample", "temperature": 0.0, "moderation_rules": rules}
    )
    question = "How long is the warranty for a refrigerator?"
    with serving(settings, local_llm) as client:
        raw = client.post("/v1/chat/stream", json={"question": question}).text
        events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
        sdk = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="unused")
        chunks = list(
            sdk.chat.completions.create(
                model="sample", messages=[{"role": "user", "content": question}], stream=True
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    streamed = "".join(event["text"] for event in events if event["type"] == "token")
    assert "three years" not in streamed.lower() and "three years" not in text.lower()
    assert "＊" * len("three years") in text and "＊" * len("three years") in streamed
    assert events[-1]["moderation"] == [
        {"target": "output", "rule_class": "term", "action": "mask", "count": 1}
    ]
