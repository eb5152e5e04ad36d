"""A knowledge base chooses its fusion from its own chunks (streamrag.retrieve.tuning)."""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamrag.config import Settings
from streamrag.embed import normalize
from streamrag.kb import KnowledgeBase, list_knowledge_bases
from streamrag.retrieve.fusion import DEFAULT_FUSION
from streamrag.retrieve.tuning import MIN_QUERIES, Tuning

from conftest import HashEmbedder

DOCUMENTS = 80


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(7))


def write_corpus(folder: Path, documents: int = DOCUMENTS, *, named: bool = True) -> dict[str, int]:
    """Documents of three sentences of words found nowhere else; when ``named``, each of a
    document's sentences also holds the document's own name (what BM25 can see) and two
    words of a shared pool (so BM25 ranks other documents too, a little lower). Returns
    each word's document (not the pool's)."""
    rng = random.Random(7)
    owner: dict[str, int] = {}
    pool = [_word(rng) for _ in range(documents)]
    folder.mkdir()
    for number in range(documents):
        sentences = []
        name = [_word(rng)] if named else []
        for _ in range(3):
            shared = rng.sample(pool, 2) if named else []
            words = [*name, *(_word(rng) for _ in range(6 - len(shared))), *shared]
            owner.update(dict.fromkeys(words, number))
            sentences.append(" ".join(words).capitalize() + ".")
        (folder / f"doc{number:03}.txt").write_text(" ".join(sentences), encoding="utf-8")
    return owner


class TopicEmbedder:
    """Knows which document each word comes from: a sentence lands on its document's
    vector although it shares no word with the rest of it (what BM25 cannot see)."""

    name = "test-topic"
    dim = DOCUMENTS

    def __init__(self, owner: dict[str, int]) -> None:
        self.owner = owner

    def _vector(self, text: str) -> np.ndarray:
        vector = np.full(self.dim, 1e-3, dtype=np.float32)
        for word in text.lower().replace(".", " ").split():
            if word in self.owner:
                vector[self.owner[word]] += 1.0
        return vector

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return normalize(np.stack([self._vector(text) for text in texts]))

    def embed_query(self, text: str) -> np.ndarray:
        return normalize(self._vector(text))


class OffByOneEmbedder(TopicEmbedder):
    """Embeds a question as if its words came from the next document: vectors that point
    confidently at the wrong passage."""

    name = "test-off-by-one"

    def embed_query(self, text: str) -> np.ndarray:
        return np.roll(super().embed_query(text), 1)


def test_useless_vectors_tune_the_fusion_towards_bm25(settings: Settings, tmp_path: Path) -> None:
    owner = write_corpus(tmp_path / "docs")
    with KnowledgeBase("k", settings=settings, embedder=OffByOneEmbedder(owner)) as kb:
        report = kb.ingest([tmp_path / "docs"])
        tuning = kb.tuning
        assert tuning is not None and report.fusion == str(tuning)
        assert tuning.queries >= MIN_QUERIES and tuning.chunks == DOCUMENTS
        assert tuning.fusion.method == "weighted" and tuning.fusion.vector_weight == 0.0
        assert tuning.scores[str(tuning.fusion)] > tuning.scores[str(DEFAULT_FUSION)]
        assert kb.retriever.fusion == tuning.fusion


def test_the_default_stays_unless_another_fusion_does_better(
    settings: Settings, tmp_path: Path
) -> None:
    owner = write_corpus(tmp_path / "docs", named=False)
    with KnowledgeBase("k", settings=settings, embedder=TopicEmbedder(owner)) as kb:
        kb.ingest([tmp_path / "docs"])
        tuning = kb.tuning
        # BM25 finds nothing (no sentence shares a word with the rest of its document), the
        # vectors find everything, and every fusion follows them (BM25 ties by their order)
        assert tuning is not None and tuning.fusion == DEFAULT_FUSION
        assert set(tuning.scores.values()) == {1.0}
        assert str(tuning) == "adaptive (tuned: MRR 1.000 on 80 pseudo-queries)"
        question = " ".join([word for word, number in owner.items() if number == 5][:6])
        assert kb.search(question, k=1)[0].chunk.title == "doc005"


def test_ingest_tunes_again_only_when_the_chunk_count_moves(
    settings: Settings, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "docs")
    with KnowledgeBase("k", settings=settings, embedder=HashEmbedder()) as kb:
        first = kb.ingest([tmp_path / "docs"]).fusion
        assert first is not None
        assert kb.ingest([tmp_path / "docs"]).fusion is None  # unchanged: not tuned again
        (tmp_path / "docs" / "doc000.txt").write_text("Changed words here now.", "utf-8")
        assert kb.ingest([tmp_path / "docs"]).fusion is None  # 1 of 80 chunks changed
        write_corpus(tmp_path / "more", 30)
        assert kb.ingest([tmp_path / "more"]).fusion is not None  # 80 -> 110 chunks


def test_a_small_knowledge_base_keeps_the_default_and_says_so(
    settings: Settings, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "docs", 10)
    with KnowledgeBase("small", settings=settings, embedder=HashEmbedder()) as kb:
        kb.ingest([tmp_path / "docs"])
        assert kb.tuning == Tuning(DEFAULT_FUSION, 10, 10, {})
        assert kb.retriever.fusion == DEFAULT_FUSION
    [info] = list_knowledge_bases(settings)
    assert info.fusion == "adaptive (default: too few chunks to tune)"


def test_a_knowledge_base_from_before_tuning_is_tuned_by_its_next_ingest(
    settings: Settings, tmp_path: Path
) -> None:
    write_corpus(tmp_path / "docs")
    with KnowledgeBase("k", settings=settings, embedder=HashEmbedder()) as kb:
        kb.ingest([tmp_path / "docs"])
        kb.store.set_meta({"fusion": ""})  # as one made before tuning existed
        assert kb.tuning is None
    assert list_knowledge_bases(settings)[0].fusion == "adaptive (default: not tuned)"
    with KnowledgeBase("k", settings=settings, embedder=HashEmbedder()) as kb:
        assert kb.ingest([tmp_path / "docs"]).fusion is not None  # nothing changed, yet tuned
        assert kb.tuning is not None and kb.retriever.fusion == kb.tuning.fusion
    assert list_knowledge_bases(settings)[0].fusion == str(kb.tuning)
