import json
from pathlib import Path

from streamrag import KnowledgeBase
from streamrag.config import Settings

from conftest import HashEmbedder
from fixtures import make_docx, make_pdf

POLICY = "退货政策：自收到商品之日起七天内可以无理由退货。请保留发票。"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def chunk_ids(kb: KnowledgeBase) -> set[str]:
    return {c.chunk_id for batch in kb.store.iter_chunks() for c in batch}


def test_unchanged_files_are_skipped(fake_kb: KnowledgeBase, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\n" + POLICY)
    write(docs / "sub" / "b.txt", "Shipping takes two days.")
    first = fake_kb.ingest([docs])
    assert sorted(Path(p).name for p in first.ingested) == ["a.md", "b.txt"]
    assert first.ok and first.chunks == 2
    embedder = fake_kb.embedder
    assert isinstance(embedder, HashEmbedder)
    calls = embedder.calls

    second = fake_kb.ingest([docs])
    assert second.ingested == [] and len(second.unchanged) == 2 and second.chunks == 0
    assert embedder.calls == calls


def test_changed_file_is_replaced_and_unchanged_chunks_keep_their_ids(
    fake_kb: KnowledgeBase, tmp_path: Path
) -> None:
    paragraphs = [
        f"第{i}段：这是一段关于退货政策的说明文字，内容各不相同，编号为{i}。" for i in range(16)
    ]
    path = write(tmp_path / "guide.txt", "\n\n".join(paragraphs))
    fake_kb.ingest([path])
    before = chunk_ids(fake_kb)
    assert len(before) > 2

    paragraphs[-1] = "最后一段已经修改：退款在三个工作日内到账。"
    write(path, "\n\n".join(paragraphs))
    report = fake_kb.ingest([path])
    assert report.ingested == [str(path)]
    after = chunk_ids(fake_kb)
    assert before & after, "chunks whose text did not change keep their ids"
    assert before - after and after - before
    for gone in before - after:
        assert fake_kb.store.get_chunk(gone) is None
    [doc] = fake_kb.documents()
    assert doc.n_chunks == len(after) == fake_kb.store.count()[1]


def test_sync_removes_documents_of_deleted_files_under_the_given_folder(
    fake_kb: KnowledgeBase, tmp_path: Path
) -> None:
    docs, other = tmp_path / "docs", tmp_path / "other"
    keep = write(docs / "keep.txt", "keep me")
    gone = write(docs / "gone.txt", "delete me")
    elsewhere = write(other / "elsewhere.txt", "not under docs")
    fake_kb.ingest([docs, elsewhere])
    gone.unlink()

    without_sync = fake_kb.ingest([docs])
    assert without_sync.removed == 0 and len(fake_kb.documents()) == 3

    report = fake_kb.ingest([docs], sync=True)
    assert report.removed == 1
    assert sorted(d.source for d in fake_kb.documents()) == sorted(
        [str(keep.resolve()), str(elsewhere.resolve())]
    )


def test_jsonl_lines_are_documents_updated_one_by_one(
    fake_kb: KnowledgeBase, tmp_path: Path
) -> None:
    records = [{"id": f"p{i}", "title": f"T{i}", "text": f"passage number {i}."} for i in range(5)]
    path = tmp_path / "corpus.jsonl"

    def dump() -> None:
        path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")

    dump()
    fake_kb.ingest([path])
    assert sorted(d.doc_id for d in fake_kb.documents()) == [f"p{i}" for i in range(5)]
    embedder = fake_kb.embedder
    assert isinstance(embedder, HashEmbedder)

    records[2]["text"] = "passage two was rewritten."
    del records[4]
    dump()
    report = fake_kb.ingest([path])
    assert report.chunks == 1, "only the changed line is embedded again"
    assert sorted(d.doc_id for d in fake_kb.documents()) == ["p0", "p1", "p2", "p3"]
    [hit] = fake_kb.search("rewritten", k=1, mode="bm25")
    assert hit.chunk.doc_id == "p2" and hit.chunk.title == "T2"


def test_changing_chunk_settings_rechunks(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "。".join(["一句话"] * 60) + "。")
    with KnowledgeBase("k", settings=settings, embedder=HashEmbedder()) as kb:
        kb.ingest([path])
        small = kb.store.count()[1]
    bigger = settings.model_copy(update={"chunk_size": 400})
    with KnowledgeBase("k", settings=bigger, embedder=HashEmbedder()) as kb:
        report = kb.ingest([path])
        assert report.ingested == [str(path)]
        assert kb.store.count()[1] < small


def test_bad_inputs_are_reported_by_name_and_the_rest_is_ingested(
    fake_kb: KnowledgeBase, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    write(docs / "good.md", "# 好\n\n" + POLICY)
    (docs / "empty.txt").write_bytes(b"")
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02\x03" * 10 + b"\xff\xfe\x00")
    (docs / "gbk.txt").write_bytes(POLICY.encode("gb18030"))
    broken = make_pdf(tmp_path / "x.pdf", ["text"]).read_bytes()
    (docs / "broken.pdf").write_bytes(broken[:200])
    make_pdf(docs / "secret.pdf", ["secret"], password="pw")
    (docs / "broken.docx").write_bytes(b"not a zip")
    make_docx(docs / "ok.docx", "标题", [("一", ["内容。"])])
    (docs / "image.png").write_bytes(b"\x89PNG")
    (docs / ".hidden.txt").write_text("hidden")
    write(docs / "corpus.jsonl", '{"id": "j1", "text": "fine"}\n{broken\n')
    unsupported = write(tmp_path / "notes.rtf", "{\\rtf1 hi}")
    missing = tmp_path / "missing.txt"

    report = fake_kb.ingest([docs, unsupported, missing])
    failed = {Path(path).name: reason for path, reason in report.failed}
    assert failed.keys() == {
        "empty.txt",
        "binary.txt",
        "broken.pdf",
        "secret.pdf",
        "broken.docx",
        "corpus.jsonl",
        "notes.rtf",
        "missing.txt",
    }
    assert failed["empty.txt"] == "empty file"
    assert "binary" in failed["binary.txt"]
    assert "encrypted PDF" in failed["secret.pdf"]
    assert "corrupt" in failed["broken.pdf"]
    assert "DOCX" in failed["broken.docx"]
    assert failed["corpus.jsonl"].startswith("line 2: invalid JSON")
    assert "unsupported file type '.rtf'" in failed["notes.rtf"]
    assert failed["missing.txt"] == "no such file or directory"
    assert [Path(p).name for p in report.ignored] == ["image.png"]
    assert sorted(Path(p).name for p in report.ingested) == ["gbk.txt", "good.md", "ok.docx"]
    assert not report.ok
    ids = {d.doc_id for d in fake_kb.documents()}
    assert "j1" in ids, "the good lines of a jsonl file with a bad line are kept"
    [hit] = fake_kb.search("退货政策", k=1, mode="bm25", where=None)
    assert hit.chunk.source.endswith(("gbk.txt", "good.md"))


def test_filters_by_path_document_and_metadata(fake_kb: KnowledgeBase, tmp_path: Path) -> None:
    from streamrag import SearchFilter

    write(tmp_path / "hr" / "leave.txt", "年假政策：员工每年有十天年假。")
    write(tmp_path / "sales" / "leave.txt", "销售团队的年假需要提前两周申请。")
    write(
        tmp_path / "c.jsonl",
        json.dumps({"id": "m1", "text": "年假可以累积到下一年。", "dept": "hr"})
        + "\n"
        + json.dumps({"id": "m2", "text": "年假不可以折现。", "dept": "finance"}),
    )
    fake_kb.ingest([tmp_path / "hr", tmp_path / "sales", tmp_path / "c.jsonl"])
    for mode in ("bm25", "vector", "hybrid"):
        hits = fake_kb.search("年假", k=10, mode=mode, where=SearchFilter(source_glob="*/hr/*"))
        assert [Path(h.chunk.source).parent.name for h in hits] == ["hr"], mode
        hits = fake_kb.search("年假", k=10, mode=mode, where=SearchFilter(meta=(("dept", "hr"),)))
        assert [h.chunk.doc_id for h in hits] == ["m1"], mode
        hits = fake_kb.search("年假", k=10, mode=mode, where=SearchFilter(doc_ids=("m2",)))
        assert [h.chunk.doc_id for h in hits] == ["m2"], mode


def test_remove_by_id_and_by_path(fake_kb: KnowledgeBase, tmp_path: Path) -> None:
    import pytest

    from streamrag.errors import DocumentNotFound

    a = write(tmp_path / "a.txt", "alpha")
    write(tmp_path / "c.jsonl", '{"id": "x1", "text": "one"}\n{"id": "x2", "text": "two"}')
    fake_kb.ingest([a, tmp_path / "c.jsonl"])
    assert fake_kb.remove("x1") == 1
    assert fake_kb.remove(str(tmp_path / "c.jsonl")) == 1
    assert fake_kb.remove(str(a)) == 1
    assert fake_kb.documents() == []
    assert fake_kb.store.count() == (0, 0)
    with pytest.raises(DocumentNotFound, match="no document 'nope'"):
        fake_kb.remove("nope")


def test_pdf_chunks_carry_their_pages(fake_kb: KnowledgeBase, tmp_path: Path) -> None:
    page_one = "第一页：" + POLICY * 5
    page_two = "Page two: shipping takes two days. " * 3
    fake_kb.ingest([make_pdf(tmp_path / "m.pdf", [page_one, page_two])])
    chunks = [c for batch in fake_kb.store.iter_chunks() for c in batch]
    assert chunks[0].page_start == 1
    assert chunks[-1].location == "p. 2"
    assert (
        chunks[-1].text
        == "Page two: shipping takes two days. " * 2 + "Page two: shipping takes two days."
    )
    [hit] = fake_kb.search("shipping", k=1, mode="bm25")
    assert hit.chunk.page_end == 2


def test_a_new_tokenizer_version_rebuilds_the_bm25_index_from_stored_text(
    fake_kb: KnowledgeBase, settings: Settings, tmp_path: Path
) -> None:
    from streamrag.retrieve.tokenize import TOKENIZER_VERSION

    fake_kb.ingest([write(tmp_path / "a.txt", "Refunds arrive within three days.")])
    fake_kb.store.replace_terms({}, {"bm25_tokenizer": "0"})  # an index from an old tokenizer
    assert fake_kb.search("refunds", mode="bm25") == []

    with KnowledgeBase("test", settings=settings, embedder=HashEmbedder()) as reopened:
        assert reopened.store.get_meta("bm25_tokenizer") == TOKENIZER_VERSION
        [hit] = reopened.search("refunds", mode="bm25")
        assert hit.chunk.text == "Refunds arrive within three days."
