"""Does a knowledge base's tuned fusion hold on real questions?

For each evaluation set (a folder with corpus.jsonl and queries.jsonl, e.g. ../shared/data/*):
ingest it (or bring it up to date) on the embedded default, choose its fusion from its own
chunks (``KnowledgeBase.tune``: pseudo-queries, no labels), then score MRR@10 on the set's
real queries for BM25, the vectors, the default fusion, the tuned one, and every candidate
(the best of these is the oracle the tuning could at most reach). The queries are only
read for checking; nothing here feeds back into the choice.

    python bench/fusion_tuning.py ../shared/data/*        # STREAMRAG_HOME picks the data dir
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from types import SimpleNamespace

from streamrag.config import load_settings
from streamrag.eval.retrieval import evaluate, ingest_corpus, load_queries, prepare_kb
from streamrag.retrieve.fusion import DEFAULT_FUSION
from streamrag.retrieve.tuning import CANDIDATES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", type=Path, help="evaluation set folders")
    args = parser.parse_args()
    settings = load_settings()
    rows = []
    for data in args.sets:
        queries = load_queries(data / "queries.jsonl")
        with prepare_kb(data, settings) as kb:
            for _ in ingest_corpus(kb, data):
                pass
            started = time.perf_counter()
            tuning = kb.tune()
            seconds = time.perf_counter() - started
            embed_query = functools.cache(kb.embedder.embed_query)  # once per question
            kb.retriever.embedder = SimpleNamespace(embed_query=embed_query)
            single = evaluate(kb, queries, ["bm25", "vector"])
            fused = {}
            for fusion in CANDIDATES:
                kb.retriever.fusion = fusion
                fused[str(fusion)] = evaluate(kb, queries, ["hybrid"])["hybrid"]["mrr@10"]
        oracle = max(fused, key=fused.__getitem__)
        print(
            f"\n{data.name}: {tuning.chunks} chunks, tuned in {seconds:.1f} s on "
            f"{tuning.queries} pseudo-queries -> {tuning.fusion}"
        )
        print(f"  {'fusion':32} {'pseudo MRR':>10} {'real MRR@10':>11}")
        for name, mrr in sorted(fused.items(), key=lambda item: -item[1]):
            mark = " <- tuned" if name == str(tuning.fusion) else ""
            print(f"  {name:32} {tuning.scores.get(name, float('nan')):10.3f} {mrr:11.3f}{mark}")
        rows.append(
            (
                data.name,
                single["bm25"]["mrr@10"],
                single["vector"]["mrr@10"],
                fused[str(DEFAULT_FUSION)],
                fused[str(tuning.fusion)],
                str(tuning.fusion),
                fused[oracle],
            )
        )
    print("\nMRR@10 on the sets' queries")
    print(f"{'set':16} {'bm25':>6} {'vector':>6} {'default':>7} {'tuned':>6} {'oracle':>6}  choice")
    for name, bm25, vector, default, tuned, choice, best in rows:
        ok = "" if tuned >= max(bm25, vector) else "  (below a single mode)"
        print(
            f"{name:16} {bm25:6.3f} {vector:6.3f} {default:7.3f} {tuned:6.3f} {best:6.3f}"
            f"  {choice}{ok}"
        )


if __name__ == "__main__":
    main()
