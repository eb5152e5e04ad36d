"""CPU the answer engine spends per streamed token, with a fake LLM emitting 10k tokens.

Measures process CPU time for consuming ``AnswerEngine.run`` end to end, minus the CPU of
iterating the fake LLM alone, divided by the token count. Every 20th token closes a citation
marker, so the citation scanner's work is included.

    python bench/engine_overhead.py [--tokens 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from streamrag import KnowledgeBase, load_settings
from streamrag.answer.engine import AnswerEngine
from streamrag.llm.base import ChatMessage, LLMDelta


class FakeLLM:
    name = "fake"

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens

    async def aclose(self) -> None:
        pass

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[LLMDelta]:
        for i in range(self.tokens):
            yield LLMDelta(text="[1]" if i % 20 == 19 else f" word{i % 7}")
        yield LLMDelta(finish_reason="stop")
        yield LLMDelta(prompt_tokens=100, completion_tokens=self.tokens)


async def llm_alone(tokens: int) -> None:
    async for _ in FakeLLM(tokens).stream([], max_tokens=0, temperature=0):
        pass


async def engine_run(engine: AnswerEngine) -> int:
    count = 0
    async for event in engine.run("What is the return policy?"):
        count += event.type == "token"
    return count


def cpu(coroutine_factory) -> float:
    started = time.process_time()
    asyncio.run(coroutine_factory())
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    settings = load_settings(home=Path(tempfile.mkdtemp(prefix="streamrag-bench-")))
    kb = KnowledgeBase("empty", settings=settings)  # retrieval is not per token
    engine = AnswerEngine(kb, FakeLLM(args.tokens))
    per_token = []
    for _ in range(args.runs):
        total = cpu(lambda: engine_run(engine))
        alone = cpu(lambda: llm_alone(args.tokens))
        per_token.append((total - alone) / args.tokens * 1000)
    print(
        f"engine CPU per token: p50 {statistics.median(per_token):.4f} ms "
        f"(min {min(per_token):.4f}, max {max(per_token):.4f}; {args.tokens} tokens, "
        f"{args.runs} runs; target <= 0.1 ms)"
    )


if __name__ == "__main__":
    main()
