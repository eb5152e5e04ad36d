"""The OpenAI-compatible backend against a real local mock server (tests/mockllm.py)
that records when its client went away."""

from __future__ import annotations

import asyncio
import time

import pytest

from streamrag.llm.base import LLMError
from streamrag.llm.openai_compat import OpenAIChat

from conftest import consume_then_cancel, free_port, running_mock, stats

MESSAGES = [{"role": "user", "content": "hello"}]


def test_streams_deltas_then_finish_reason_and_usage(mock_llm) -> None:
    base, _ = mock_llm

    async def run() -> list:
        return [
            d
            async for d in OpenAIChat("mock-llm", base).stream(
                MESSAGES, max_tokens=100, temperature=0
            )
        ]

    deltas = asyncio.run(run())
    texts = [d.text for d in deltas if d.text]
    assert len(texts) == 100
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert deltas[-1].completion_tokens == 100 and deltas[-1].prompt_tokens


def test_closing_the_stream_closes_the_upstream_connection_at_once(mock_llm) -> None:
    base, _ = mock_llm

    async def run() -> float:
        stream = OpenAIChat("mock-llm", base).stream(MESSAGES, max_tokens=100, temperature=0)
        received = 0
        async for delta in stream:
            received += bool(delta.text)
            if received == 5:
                break
        await stream.aclose()
        return time.time()

    closed_at = asyncio.run(run())
    time.sleep(0.3)
    [record] = stats(base)["records"]
    assert record["client_closed_early"] is True
    assert record["tokens_sent"] <= 7, "the upstream kept generating after the close"
    assert record["t_client_closed"] - closed_at < 0.05


def test_cancelling_the_consuming_task_closes_the_upstream(mock_llm) -> None:
    base, _ = mock_llm
    stream = OpenAIChat("mock-llm", base).stream(MESSAGES, max_tokens=100, temperature=0)
    consume_then_cancel(stream, after=0.2)
    time.sleep(0.3)
    [record] = stats(base)["records"]
    assert record["client_closed_early"] is True
    assert record["tokens_sent"] < 20


def test_an_upstream_that_dies_mid_stream_raises_a_retryable_error(mock_llm) -> None:
    base, process = mock_llm

    async def run() -> int:
        received = 0
        with pytest.raises(LLMError) as error:
            async for delta in OpenAIChat("mock-llm", base).stream(
                MESSAGES, max_tokens=100, temperature=0
            ):
                received += bool(delta.text)
                if received == 3:
                    process.kill()
        assert error.value.retryable
        return received

    assert 3 <= asyncio.run(run()) < 100


def test_an_unreachable_upstream_raises_a_clear_error() -> None:
    async def run() -> None:
        stream = OpenAIChat("m", f"http://127.0.0.1:{free_port()}/v1", connect_timeout=2).stream(
            MESSAGES, max_tokens=5, temperature=0
        )
        async for _ in stream:
            pass

    with pytest.raises(LLMError) as error:
        asyncio.run(run())
    assert error.value.code == "upstream_unreachable" and error.value.retryable


def test_the_configured_base_url_selects_the_api_backend(monkeypatch, tmp_path) -> None:
    from streamrag.config import load_settings
    from streamrag.llm import make_llm

    monkeypatch.setenv("STREAMRAG_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("STREAMRAG_LLM_MODEL", "glm-4-flash")
    llm = make_llm(load_settings(home=tmp_path))
    assert isinstance(llm, OpenAIChat) and llm.name == "api:glm-4-flash"


def test_an_upstream_that_stalls_mid_stream_times_out_with_a_retryable_error() -> None:
    received: list[str] = []

    async def run() -> None:
        llm = OpenAIChat("m", base, timeout=0.5)
        async for delta in llm.stream(MESSAGES, max_tokens=5, temperature=0):
            received.append(delta.text)

    with (
        running_mock(first_token_ms=10, inter_token_ms=3000, tokens=5) as (base, _),
        pytest.raises(LLMError) as caught,
    ):
        asyncio.run(run())
    assert caught.value.code == "upstream_timeout" and caught.value.retryable
    assert "".join(received).strip(), "the first token came before the stall"
