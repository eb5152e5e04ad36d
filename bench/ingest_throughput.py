"""Ingest throughput per embedding model, and the share of the embedder's raw speed it keeps.

For each model, takes passages of the public evaluation sets (../shared/data, Chinese and
English mixed), and measures
  raw       the embedder alone on exactly the texts the pipeline embeds, in the same batches
            (before and after the pipeline run, averaged: the machine drifts by a few %);
  pipeline  ``KnowledgeBase.ingest`` of the same passages as a .jsonl file into a new store
            (read, clean, chunk, BM25 terms, embed, write), and the share of its wall time
            spent inside the embedder.

    python bench/ingest_throughput.py [--models e5-small use-m3] [--chars 150000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamrag import KnowledgeBase, load_settings
from streamrag.embed import Embedder
from streamrag.ingest.chunker import chunk_blocks
from streamrag.ingest.loaders import Origin, load_jsonl
from streamrag.kb import shared_embedder
from streamrag.records import indexed_text

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def corpus(path: Path, chars: int) -> Path:
    """Alternate Chinese and English passages until ``chars`` characters are written."""
    sources = [DATA / "cmrc2018" / "corpus.jsonl", DATA / "cmu-wikiqa-en" / "corpus.jsonl"]
    streams = [p.open(encoding="utf-8") for p in sources]
    written = 0
    with path.open("w", encoding="utf-8") as out:
        while written < chars:
            for stream in streams:
                record = json.loads(stream.readline())
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += len(record["text"])
    for stream in streams:
        stream.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["e5-small", "use-m3"])
    parser.add_argument("--chars", type=int, default=150_000, help="text to ingest per model")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"evaluation data not found at {DATA}")

    for model in args.models:
        home = Path(tempfile.mkdtemp(prefix="streamrag-bench-"))
        settings = load_settings(home=home, embed_model=model)
        path = corpus(home / "corpus.jsonl", args.chars)
        embedder = shared_embedder(settings)
        embedder.embed_documents(["warm up"])

        texts = [
            indexed_text(doc.title, draft.headings, draft.text)
            for doc in load_jsonl(Origin.of(path), path.read_bytes()).documents
            for draft in chunk_blocks(doc.blocks, settings.chunk_size, settings.chunk_overlap)
        ]
        before = raw_rate(embedder, texts, settings.embed_batch_size)
        timed = TimedEmbedder(embedder)
        with KnowledgeBase("bench", settings=settings, embedder=timed) as kb:
            report = kb.ingest([path])
        assert report.ok and report.chunks == len(texts), report
        after = raw_rate(embedder, texts, settings.embed_batch_size)
        raw = (before + after) / 2
        pipeline = report.chunks / report.seconds
        chars = sum(len(t) for t in texts)
        print(
            f"{model:<9} {len(texts)} chunks ({chars} chars): raw {raw:7.1f} chunks/s "
            f"({before:.1f} before, {after:.1f} after), pipeline {pipeline:7.1f} chunks/s "
            f"({chars / report.seconds:6.0f} chars/s), kept {pipeline / raw:6.1%}, "
            f"embedder busy {timed.seconds / report.seconds:6.1%} of the pipeline's time"
        )


class TimedEmbedder:
    """The same embedder, counting the seconds spent inside it."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.seconds = 0.0

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self.inner.embed_documents(texts)
        finally:
            self.seconds += time.perf_counter() - started

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


def raw_rate(embedder: Embedder, texts: list[str], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        embedder.embed_documents(texts[start : start + batch])
    return len(texts) / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
