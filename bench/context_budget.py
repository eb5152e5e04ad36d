"""How many tokens of sources the bundled model should read: hit rate against prompt size.

Answers the first --questions of an evaluation set (default ../shared/data/cmrc2018) once per
context budget (``context_tokens``), one budget after the other (a prompt right after its
twin for another budget would reuse its prefix in llama.cpp), and prints per budget: answer
hit rate, share of answers with a supported citation, prompt tokens p50, TTFT p50, and both
as a ratio of the first budget's. Prompt tokens, not seconds, are the figure that travels
between machines (prefill is ~100 % of TTFT: bench/ttft_breakdown.py).

    python bench/context_budget.py [--budgets 1500 1000 700 450] [--questions 50]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from streamrag.config import load_settings
from streamrag.eval.answers import AnswerResult, answer_one, load_answer_queries, summarize
from streamrag.eval.retrieval import ingest_corpus, prepare_kb
from streamrag.rag import RAG

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmrc2018"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--budgets", type=int, nargs="+", default=[1500, 1000, 700, 450])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--model", default=None, help="the answer model (default: settings)")
    args = parser.parse_args()
    settings = load_settings(**({"llm_model": args.model} if args.model else {}))
    queries = load_answer_queries(args.data / "queries.jsonl", args.questions)
    results: dict[int, list[AnswerResult]] = {budget: [] for budget in args.budgets}
    with prepare_kb(args.data, settings) as kb:
        for _ in ingest_corpus(kb, args.data):
            pass
        with RAG(kb, settings=settings) as rag:
            engine_settings = rag.engine.settings
            for budget in args.budgets:  # one budget after another: no prompt follows its
                rag.engine.settings = dataclasses.replace(  # twin (llama.cpp reuses prefixes)
                    engine_settings, context_tokens=budget
                )
                for number, query in enumerate(queries):
                    results[budget].append(answer_one(rag, query))
                    print(f"{budget}: {number + 1}/{len(queries)}", end="\r", flush=True)
            model = rag.engine.llm.name
    print(f"\n{args.data.name}, {len(queries)} questions, {model}")
    print(
        f"{'budget':>6} {'hit':>6} {'supported':>9} {'prompt p50':>10} {'ratio':>6}"
        f" {'TTFT p50 ms':>11} {'ratio':>6}"
    )
    first = summarize(results[args.budgets[0]], model)
    for budget in args.budgets:
        metrics = summarize(results[budget], model)
        print(
            f"{budget:6} {metrics['answer_hit_rate']:6.3f}"
            f" {metrics['answers_with_supported_citations']:9.3f}"
            f" {metrics['prompt_tokens_p50']:10.0f}"
            f" {metrics['prompt_tokens_p50'] / first['prompt_tokens_p50']:6.2f}"
            f" {metrics['ttft_p50_ms']:11.0f} {metrics['ttft_p50_ms'] / first['ttft_p50_ms']:6.2f}"
        )


if __name__ == "__main__":
    main()
