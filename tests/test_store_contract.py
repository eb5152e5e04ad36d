"""The contract every backend keeps: catalog, document store, keyword and vector index,
uploads. Each test runs on the embedded backend and on PostgreSQL (a real server)."""

from __future__ import annotations

import dataclasses
import io
import math
import threading
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
from starlette.datastructures import UploadFile

from streamrag.backends import Backend, open_backend
from streamrag.config import Settings
from streamrag.errors import InvalidName
from streamrag.store import ChunkWrite, DocumentWrite, SearchFilter, Store


@pytest.fixture
def backend(backend_settings: Settings) -> Iterator[Backend]:
    opened = open_backend(backend_settings)
    yield opened
    opened.close()


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    opened = backend.catalog.open("shop")
    yield opened
    opened.close()


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def document(
    doc_id: str, texts: list[str], vectors: list[np.ndarray], source: str = "", **meta: object
) -> DocumentWrite:
    chunks = [
        ChunkWrite(f"{doc_id}#{i}", i, text, ("Policies",), None, None, text.lower().split())
        for i, text in enumerate(texts)
    ]
    return DocumentWrite(
        doc_id=doc_id,
        title=doc_id.title(),
        source=source or f"/docs/{doc_id}.md",
        content_hash=str(hash(tuple(texts))),
        pipeline="p1",
        size=sum(map(len, texts)),
        chunks=chunks,
        meta=dict(meta),
        vectors=np.stack(vectors),
    )


CORPUS = [
    document(
        "returns",
        ["returns within seven days", "refunds go back to the card"],
        [unit(1, 0, 0, 0), unit(1, 1, 0, 0)],
        "/docs/policies/returns.md",
        dept="after-sales",
    ),
    document(
        "shipping",
        ["shipping takes two days", "express shipping costs extra shipping fees"],
        [unit(0, 1, 0, 0), unit(0, 1, 1, 0)],
        "/docs/policies/shipping.md",
        dept="logistics",
    ),
    document("manual", ["descale the machine monthly"], [unit(0, 0, 0, 1)], "/docs/manual.md"),
]


# chunks that match no query: common terms (in over a quarter of the chunks) are not queried
FILLER = [document(f"filler{i}", [f"filler text {i}"], [unit(0, 0, 0, 1)]) for i in range(12)]


def bm25(query: list[str], corpus: list[DocumentWrite]) -> dict[str, float]:
    """BM25 as FTS5's bm25() computes it (k1 = 1.2, b = 0.75), by hand."""
    chunks = [chunk for doc in corpus for chunk in doc.chunks]
    average = sum(len(c.terms) for c in chunks) / len(chunks)
    scores: dict[str, float] = {}
    for term in set(query):
        df = sum(term in c.terms for c in chunks)
        idf = max(math.log((len(chunks) - df + 0.5) / (df + 0.5)), 1e-6)
        for chunk in chunks:
            tf = Counter(chunk.terms)[term]
            if tf:
                norm = tf + 1.2 * (1 - 0.75 + 0.75 * len(chunk.terms) / average)
                scores[chunk.chunk_id] = scores.get(chunk.chunk_id, 0) + idf * tf * 2.2 / norm
    return scores


def test_the_catalog_creates_lists_and_drops(backend: Backend) -> None:
    catalog = backend.catalog
    assert not catalog.exists("shop") and catalog.list() == []
    store = catalog.open("shop")
    store.write_documents(CORPUS)
    store.set_meta({"embed_model": "test-4d"})
    catalog.open("客服")
    [info, chinese] = catalog.list()
    assert (info.name, info.documents, info.chunks, info.embed_model) == ("shop", 3, 5, "test-4d")
    assert info.size_bytes > 0 and info.updated_at[:2] == "20" and chinese.name == "客服"
    assert catalog.exists("shop") and catalog.drop("shop") and not catalog.exists("shop")
    assert not catalog.drop("shop")
    assert catalog.open("shop").count() == (0, 0)  # made again: empty
    for bad in ("../x", "", "con", "a/b", "x.sqlite"):
        with pytest.raises(InvalidName):
            catalog.open(bad)


def test_documents_are_written_read_and_replaced_whole(store: Store) -> None:
    store.write_documents(CORPUS)
    assert store.count() == (3, 5)
    assert store.document_states(["returns", "nope"]) == {"returns": (CORPUS[0].content_hash, "p1")}
    listed = store.list_documents()
    assert [d.doc_id for d in listed] == ["manual", "returns", "shipping"]
    assert listed[1].meta == {"dept": "after-sales"} and listed[1].n_chunks == 2
    assert store.doc_ids_by_source("/docs/manual.md") == ["manual"]
    assert sorted(store.sources()) == sorted(d.source for d in CORPUS)
    chunk = store.get_chunk("returns#1")
    assert chunk is not None and (chunk.text, chunk.title, chunk.headings, chunk.ordinal) == (
        "refunds go back to the card",
        "Returns",
        ("Policies",),
        1,
    )
    assert set(store.get_chunks(["returns#0", "manual#0", "gone"])) == {"returns#0", "manual#0"}
    assert [c.chunk_id for batch in store.iter_chunks(2) for c in batch] == [
        "returns#0",
        "returns#1",
        "shipping#0",
        "shipping#1",
        "manual#0",
    ]

    new = document("returns", ["returns within thirty days"], [unit(0, 0, 1, 0)])
    store.write_documents([new], delete=["manual"])
    assert store.count() == (2, 3)
    assert store.get_chunk("returns#1") is None and store.get_chunk("manual#0") is None
    assert store.get_chunk("returns#0").text == "returns within thirty days"  # type: ignore[union-attr]
    assert store.delete_documents(["shipping", "nope"]) == 1
    assert store.count() == (1, 1)


def test_a_failed_write_changes_nothing(store: Store) -> None:
    store.write_documents(CORPUS[:1])
    broken = document("manual", ["descale"], [unit(0, 0, 0, 1)])
    broken = dataclasses.replace(broken, vectors=None)
    with pytest.raises(ValueError, match="one vector per chunk"):
        store.write_documents([CORPUS[1], broken], delete=["returns"])
    assert store.count() == (1, 2) and store.keyword_search(["shipping"], 5) == []


def test_bm25_is_fts5s_bm25_and_follows_every_change(store: Store) -> None:
    store.write_documents(CORPUS + FILLER)
    query = ["shipping", "refunds", "card"]
    expected = bm25(query, CORPUS + FILLER)
    found = store.keyword_search(query, 10)
    assert [chunk_id for chunk_id, _ in found] == sorted(expected, key=lambda c: -expected[c])
    for chunk_id, score in found:
        assert score == pytest.approx(expected[chunk_id], rel=1e-4)
    assert store.keyword_search(query, 1) == found[:1]
    assert store.keyword_search(["nowhere"], 5) == [] and store.keyword_search([], 5) == []

    # after a replacement and a delete, the statistics are those of what is left
    new = document("shipping", ["shipping is free"], [unit(0, 1, 0, 0)])
    store.write_documents([new], delete=["manual"])
    left = [CORPUS[0], new, *FILLER]
    expected = bm25(["shipping", "refunds"], left)
    for chunk_id, score in store.keyword_search(["shipping", "refunds"], 10):
        assert score == pytest.approx(expected[chunk_id], rel=1e-4)

    assert store.keyword_search(["filler"], 5) == store.keyword_search(["filler", "text"], 5)
    assert len(store.keyword_search(["filler"], 50)) == 12  # too common, but all there is

    # a rebuilt index (a new tokenizer) is what is searched
    store.replace_terms({"returns#0": ["retour"], "returns#1": []}, {"bm25_tokenizer": "2"})
    assert [c for c, _ in store.keyword_search(["retour"], 5)] == ["returns#0"]
    assert store.keyword_search(["refunds"], 5) == []
    assert store.get_meta("bm25_tokenizer") == "2"


def test_vector_search_ranks_by_cosine_and_follows_reembedding(store: Store) -> None:
    store.write_documents(CORPUS)
    found = store.vector_search(unit(1, 0.2, 0, 0), 3)
    assert [c for c, _ in found] == ["returns#0", "returns#1", "shipping#0"]
    assert found[0][1] == pytest.approx(float(unit(1, 0.2, 0, 0) @ unit(1, 0, 0, 0)), abs=1e-5)
    assert len(store.vector_search(unit(1, 1, 1, 1), 50)) == 5
    kept = store.get_vectors(["shipping#1", "gone"])
    assert list(kept) == ["shipping#1"] and np.allclose(kept["shipping#1"], unit(0, 1, 1, 0))

    # re-embedded with a model of another dimension
    vectors = {f"{d.doc_id}#{i}": unit(*([0.0] * i), 1, 0.5) for d in CORPUS for i in range(2)}
    vectors = {c: np.pad(v, (0, 6 - len(v))) for c, v in vectors.items() if store.get_chunk(c)}
    store.replace_vectors(vectors, {"embed_model": "six", "embed_dim": "6"})
    assert store.get_meta("embed_dim") == "6"
    assert [c for c, _ in store.vector_search(unit(0, 1, 0.5, 0, 0, 0), 2)] in (
        ["returns#1", "shipping#1"],
        ["shipping#1", "returns#1"],
    )


def test_filters_restrict_both_searches(store: Store) -> None:
    store.write_documents(CORPUS + FILLER)
    cases = {
        SearchFilter(doc_ids=("shipping",)): {"shipping#0", "shipping#1"},
        SearchFilter(source_glob="*/policies/*"): {
            "returns#0",
            "returns#1",
            "shipping#0",
            "shipping#1",
        },
        SearchFilter(source_glob="/docs/[mx]anual.md"): {"manual#0"},
        SearchFilter(source_glob="/DOCS/*"): set(),  # GLOB is case-sensitive
        SearchFilter(meta=(("dept", "logistics"),)): {"shipping#0", "shipping#1"},
        SearchFilter(meta=(("dept", "logistics"),), doc_ids=("returns",)): set(),
    }
    terms = ["returns", "refunds", "shipping", "descale", "card", "days"]
    for where, allowed in cases.items():
        assert {c for c, _ in store.vector_search(unit(1, 1, 1, 1), 50, where)} == allowed, where
        assert {c for c, _ in store.keyword_search(terms, 50, where)} == allowed, where


def test_writers_of_one_knowledge_base_take_turns(backend: Backend) -> None:
    stores = [backend.catalog.open("shop") for _ in range(2)]
    errors: list[BaseException] = []

    def write(store: Store, name: str) -> None:
        try:
            for i in range(15):
                store.write_documents(
                    [document(f"{name}{i}", ["shared words here", f"{name} own"], [unit(1, 0)] * 2)]
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(s, n)) for s, n in zip(stores, "ab", strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert stores[0].count() == (30, 60)
    shared = dict(stores[0].keyword_search(["shared"], 100))
    assert len(shared) == 30 and len(set(shared.values())) == 1  # one df for all


def test_uploads_are_kept_until_discarded(backend: Backend) -> None:
    files = [
        UploadFile(io.BytesIO(b"hello"), filename="../../etc/notes.md"),
        UploadFile(io.BytesIO("你好".encode()), filename="笔记.txt"),
    ]
    origins = backend.uploads.save("shop", files)
    by_source = {origin.source: path for path, origin in origins.items()}
    assert by_source["../../etc/notes.md"].read_bytes() == b"hello"
    assert by_source["../../etc/notes.md"].name == "notes.md"
    assert by_source["笔记.txt"].read_text() == "你好"
    assert all(o.doc_id.startswith("upload-") for o in origins.values())
    backend.uploads.release(origins)
    assert backend.uploads.discard("shop", "笔记.txt")
    assert not backend.uploads.discard("shop", "笔记.txt")
    assert not backend.uploads.discard("shop", "other.txt")
    backend.uploads.drop("shop")
    assert not backend.uploads.discard("shop", "../../etc/notes.md")
    with pytest.raises(InvalidName):
        backend.uploads.save("../x", files)
