"""Time to first token with the bundled model, broken into its stages, on a ~1k-chunk store.

Stages, each measured on its own per question (p50 / p95 in ms):
  condense      first question (nothing to condense) and a follow-up condensed by the rules;
                an LLM-condensed follow-up is printed for information
  query embed   e5-small query embedding
  retrieval     hybrid search with the query vector already computed
  prompt        building the messages
  prefill       the model, from request to its first token
and then the engine end to end (its own timings), in a second pass so that no prompt follows
itself (llama.cpp reuses the prefix a prompt shares with the previous one); its TTFT should be
about the sum of the stages.

The store is built once from ../shared/data/cmrc2018/corpus.jsonl (the first passages that
make ~1,000 chunks) in --home and reused.

    python bench/ttft_breakdown.py [--questions 20] [--home DIR] [--model qwen2.5-coder-0.5b]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np

from streamrag import RAG, KnowledgeBase, load_settings
from streamrag.answer.condense import Condenser
from streamrag.answer.events import Done
from streamrag.answer.prompt import build_messages
from streamrag.history.base import Turn
from streamrag.retrieve.retriever import Retriever

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmrc2018"
TARGET_CHUNKS = 1000


class Precomputed:
    """An embedder that returns a vector computed beforehand (retrieval timed without it)."""

    def __init__(self, name: str, dim: int, vector: np.ndarray) -> None:
        self.name, self.dim, self.vector = name, dim, vector

    def embed_query(self, text: str) -> np.ndarray:
        return self.vector

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


def build_store(home: Path) -> tuple[KnowledgeBase, list[str]]:
    settings = load_settings(home=home)
    kb = KnowledgeBase("ttft-1k", settings=settings)
    subset = home / "corpus-1k.jsonl"
    passages = [json.loads(line) for line in (DATA / "corpus.jsonl").open(encoding="utf-8")]
    if not subset.is_file():
        budget, chosen = 0, []
        for passage in passages:  # ~1 chunk per 420 characters at the default chunk size
            budget += max(1, -(-len(passage["text"]) // 420))
            chosen.append(passage)
            if budget >= TARGET_CHUNKS:
                break
        subset.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in chosen))
    kept = {json.loads(line)["id"] for line in subset.open(encoding="utf-8")}
    started = time.perf_counter()
    report = kb.ingest([subset])
    if report.ingested:
        print(f"built the store: {report.chunks} chunks in {time.perf_counter() - started:.0f} s")
    questions = [
        q["question"]
        for q in map(json.loads, (DATA / "queries.jsonl").open(encoding="utf-8"))
        if set(q["gold_ids"]) & kept
    ]
    return kb, questions


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000


async def first_token_ms(stream: AsyncIterator) -> float:
    started = time.perf_counter()
    async for delta in stream:
        if delta.text:
            elapsed = (time.perf_counter() - started) * 1000
            await stream.aclose()
            return elapsed
    return float("nan")


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(values):9.2f}   p95 {p95:9.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache" / "streamrag-bench")
    parser.add_argument("--model", default="default", help="bundled model name")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    kb, questions = build_store(args.home)
    questions = questions[: args.questions]
    rag = RAG(
        kb,
        settings=kb.settings.model_copy(
            update={"llm_model": args.model, "llm_threads": args.threads}
        ),
    )
    engine = rag.engine
    print(f"{kb.store.count()[1]} chunks, {len(questions)} questions, model {engine.llm.name}")
    history = [Turn("《战国无双3》是由哪两个公司合作开发的？", "光荣和ω-force [1]。")]
    rules = Condenser(None, "rules")
    llm_condenser = Condenser(engine.llm, "llm")
    stages: dict[str, list[float]] = {
        k: [] for k in ("condense (first)", "condense (rules)", "query embed", "retrieval",
                        "prompt", "prefill", "condense (llm)")
    }  # fmt: skip
    engine_parts: dict[str, list[float]] = {}
    embedder = kb.embedder
    embedder.embed_query("warm up")

    async def measure(question: str) -> None:
        follow_up = "它是哪一年发行的？"
        stages["condense (first)"].append(
            await atimed(lambda: engine.condenser.condense(question, []))
        )
        stages["condense (rules)"].append(await atimed(lambda: rules.condense(follow_up, history)))
        stages["query embed"].append(timed(lambda: embedder.embed_query(question)))
        vector = embedder.embed_query(question)
        retriever = Retriever(kb.store, Precomputed(embedder.name, embedder.dim, vector))
        hits = retriever.search(question, engine.settings.top_k)
        stages["retrieval"].append(timed(lambda: retriever.search(question, engine.settings.top_k)))
        sources = engine._numbered_sources(hits)
        stages["prompt"].append(timed(lambda: build_messages(question, sources)))
        messages = build_messages(question, sources)
        stages["prefill"].append(
            await first_token_ms(engine.llm.stream(messages, max_tokens=8, temperature=0))
        )
        if len(stages["condense (llm)"]) < 5:
            stages["condense (llm)"].append(
                await atimed(lambda: llm_condenser.condense(follow_up, history))
            )

    async def answer(question: str) -> None:
        async for event in engine.run(question):
            if isinstance(event, Done):
                for key, value in event.timings.items():
                    engine_parts.setdefault(key, []).append(value)

    async def atimed(make: Callable) -> float:
        started = time.perf_counter()
        await make()
        return (time.perf_counter() - started) * 1000

    async def run_all() -> None:
        # Two passes, so that no prompt follows itself: llama.cpp reuses the prompt prefix it
        # shares with the previous request (here the instructions and the worked example).
        for label, step in (("stages", measure), ("engine", answer)):
            for number, question in enumerate(questions, 1):
                await step(question)
                print(f"\r{label} {number}/{len(questions)}", end="", flush=True)
            print()

    asyncio.run(run_all())
    print("\nstage                 ms (target: all but prefill <= 15 ms p50)")
    for name, values in stages.items():
        print(f"  {name:<18} {summary(values)}")
    print("\nengine end to end (done.timings)")
    for name, values in engine_parts.items():
        print(f"  {name:<18} {summary(values)}")
    ttft = statistics.median(engine_parts["ttft_ms"])
    prefill = statistics.median(stages["prefill"])
    parts = sum(
        statistics.median(stages[k])
        for k in ("condense (first)", "query embed", "retrieval", "prompt", "prefill")
    )
    print(
        f"\nsum of stage p50s {parts:.0f} ms vs engine TTFT p50 {ttft:.0f} ms "
        f"(ratio {ttft / parts:.2f}); prefill is {prefill / ttft:.0%} of TTFT"
    )


if __name__ == "__main__":
    main()
