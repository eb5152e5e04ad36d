"""The bundled local model for real: Qwen2.5-Coder-0.5B-Instruct on llama-cpp-python."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from streamrag.llm.local import LocalLlama, bundled_model


def test_the_model_file_is_joined_once_and_verified(tmp_path: Path) -> None:
    first = bundled_model(tmp_path)
    modified = first.stat().st_mtime_ns
    assert bundled_model(tmp_path) == first and first.stat().st_mtime_ns == modified


def test_tokens_arrive_one_by_one(local_llm: LocalLlama) -> None:
    arrivals: list[float] = []
    texts: list[str] = []

    async def run() -> None:
        async for delta in local_llm.stream(
            [{"role": "user", "content": "Count from 1 to 30, separated by commas."}],
            max_tokens=60,
            temperature=0,
        ):
            if delta.text:
                arrivals.append(time.monotonic())
                texts.append(delta.text)

    asyncio.run(run())
    assert len(texts) >= 20
    assert "1" in "".join(texts) and "10" in "".join(texts)
    assert arrivals[-1] - arrivals[0] > 0.2, "tokens came in one burst, not as generated"


def test_closing_the_stream_stops_generating(local_llm: LocalLlama) -> None:
    """After a close the next generation starts at once: the first one did not run on."""

    async def first_tokens(count: int, max_tokens: int) -> float:
        stream = local_llm.stream(
            [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
            max_tokens=max_tokens,
            temperature=0,
        )
        started = time.monotonic()
        seen = 0
        async for delta in stream:
            seen += bool(delta.text)
            if seen == count:
                break
        await stream.aclose()
        return time.monotonic() - started

    async def run() -> tuple[float, float]:
        await first_tokens(5, 400)  # closed after 5 of up to 400 tokens
        return await first_tokens(1, 400), await first_tokens(50, 50)

    next_start, fifty = asyncio.run(run())
    per_token = fifty / 50
    assert next_start < 40 * per_token, (
        f"the next answer waited {next_start:.1f} s: the closed one kept generating"
    )


def test_without_a_base_url_the_bundled_model_is_used_and_shared(tmp_path: Path) -> None:
    from streamrag.config import load_settings
    from streamrag.llm import make_llm

    settings = load_settings(home=tmp_path, llm_threads=2)
    llm = make_llm(settings)
    assert isinstance(llm, LocalLlama) and llm.name.startswith("local:qwen2.5-coder-0.5b")
    assert make_llm(settings) is llm, "the model loads once per process"


def test_an_unknown_or_missing_bundled_model_is_a_clear_error(tmp_path: Path) -> None:
    from streamrag.errors import ConfigError

    with pytest.raises(ConfigError, match="no bundled model named 'qwen-9b': choose"):
        bundled_model(tmp_path, "qwen-9b")


def test_answers_wait_their_turn_in_order_and_are_told_their_place(
    local_llm: LocalLlama,
) -> None:
    """One generation at a time: the third answer asked for hears at once that two come
    before it, then one, then that its turn has come; the answers come out first come
    first served."""
    places: dict[int, list[int]] = {0: [], 1: [], 2: []}
    finished: list[int] = []

    async def answer(number: int) -> None:
        async for delta in local_llm.stream(
            [{"role": "user", "content": f"Say the number {number}."}],
            max_tokens=8,
            temperature=0,
        ):
            if delta.queued is not None:
                places[number].append(delta.queued)
        finished.append(number)

    async def run() -> None:
        await asyncio.gather(*(answer(number) for number in range(3)))

    asyncio.run(run())
    assert places == {0: [], 1: [1, 0], 2: [2, 1, 0]}
    assert finished == [0, 1, 2]
