"""Knowledge-base endpoints through a real uvicorn: upload with SSE progress, list, search,
delete, drop, and the limits on uploads."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import psycopg
import pytest

from streamrag.config import Settings
from streamrag.uploads import clean_name

from conftest import BACKENDS, ScriptedLLM, serving

# every test here on both backends: the embedded files and PostgreSQL
pytestmark = pytest.mark.parametrize("server_settings", BACKENDS, indirect=True)

LLM = ScriptedLLM(["ok"])
POLICY = "退货政策：商品签收后七天内可无理由退货，运费由买家承担。\n\n换货需在十五天内申请。"
MANUAL = "# Kettle\n\nDescale the kettle every month with citric acid."


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events = []
    for block in response.text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def upload(client: httpx.Client, kb: str, *files: tuple[str, bytes], **params) -> httpx.Response:
    return client.post(
        f"/v1/kbs/{kb}/documents",
        files=[("files", (name, data)) for name, data in files],
        params=params,
    )


def test_upload_streams_ingest_progress_then_the_documents_are_searchable(server_settings):
    with serving(server_settings, LLM) as client:
        response = upload(
            client,
            "newkb",
            ("退货政策.txt", POLICY.encode()),
            ("manual.md", MANUAL.encode()),
            ("broken.pdf", b"%PDF-1.4 not really"),
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        kinds = [kind for kind, _ in events]
        assert kinds[0] == "found" and events[0][1]["count"] == 3
        assert "planned" in kinds and "embedded" in kinds and kinds[-1] == "done"
        files = {data["path"]: data for kind, data in events if kind == "file"}
        assert files["退货政策.txt"]["status"] == "ingested"
        assert files["manual.md"]["status"] == "ingested"
        assert files["broken.pdf"]["status"] == "failed" and files["broken.pdf"]["reason"]
        report = events[-1][1]
        assert sorted(report["ingested"]) == ["manual.md", "退货政策.txt"]
        assert report["failed"][0]["path"] == "broken.pdf" and report["chunks"] >= 2

        kbs = {kb["name"]: kb for kb in client.get("/v1/kbs").json()}
        assert kbs["newkb"]["documents"] == 2 and kbs["shop"]["documents"] > 0
        documents = client.get("/v1/kbs/newkb/documents").json()
        assert sorted(d["title"] for d in documents) == ["Kettle", "退货政策"]
        found = client.post("/v1/kbs/newkb/search", json={"query": "退货", "k": 3}).json()
        assert "七天" in found["hits"][0]["text"] and found["degraded"] is None
        assert client.get("/v1/models").json()["data"][0]["id"] in kbs


def stored_uploads(settings: Settings, kb: str) -> list[str]:
    """The file names of a knowledge base's kept uploads: files in its folder (embedded), or
    rows of the uploads table (PostgreSQL)."""
    if settings.database_url is None:
        return sorted(p.name for p in (settings.home / "uploads" / kb).rglob("*") if p.is_file())
    with psycopg.connect(settings.database_url) as db:
        rows = db.execute("SELECT name FROM uploads WHERE kb = %s", (kb,)).fetchall()
    return sorted(clean_name(name) for (name,) in rows)


def test_uploading_the_same_file_again_is_skipped_and_a_changed_one_replaced(server_settings):
    with serving(server_settings, LLM) as client:
        upload(client, "kb2", ("faq.md", MANUAL.encode()))
        again = upload(client, "kb2", ("faq.md", MANUAL.encode()), stream="false").json()
        assert again["unchanged"] == ["faq.md"] and again["ingested"] == []
        changed = upload(client, "kb2", ("faq.md", b"# Kettle\n\nNever descale."), stream="false")
        assert changed.json()["ingested"] == ["faq.md"]
        (document,) = client.get("/v1/kbs/kb2/documents").json()
        hits = client.post("/v1/kbs/kb2/search", json={"query": "descale", "mode": "bm25"})
        assert [hit["text"] for hit in hits.json()["hits"]] == ["Never descale."]

        assert stored_uploads(server_settings, "kb2") == ["faq.md"]
        deleted = client.delete(f"/v1/kbs/kb2/documents/{document['doc_id']}")
        assert deleted.status_code == 200 and deleted.json()["removed"] == 1
        assert client.get("/v1/kbs/kb2/documents").json() == []
        assert stored_uploads(server_settings, "kb2") == [], "the uploaded file goes with it"
        missing = client.delete("/v1/kbs/kb2/documents/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "document_not_found"


def test_deleting_an_upload_removes_its_file_with_a_linked_home(server_settings, tmp_path):
    link = tmp_path / "linked-home"
    server_settings.home.mkdir(parents=True, exist_ok=True)
    link.symlink_to(server_settings.home)
    settings = server_settings.model_copy(update={"home": link})
    with serving(settings, LLM) as client:
        upload(client, "kb5", ("faq.md", MANUAL.encode()), stream="false")
        (document,) = client.get("/v1/kbs/kb5/documents").json()
        assert stored_uploads(settings, "kb5") == ["faq.md"]
        assert client.delete(f"/v1/kbs/kb5/documents/{document['doc_id']}").status_code == 200
        assert stored_uploads(settings, "kb5") == []


def test_a_file_name_never_becomes_a_path(server_settings):
    home = server_settings.home
    with serving(server_settings, LLM) as client:
        report = upload(
            client, "kb3", ("../../../escape.txt", b"text that tries to escape"), stream="false"
        ).json()
        assert report["ingested"] == ["../../../escape.txt"]
        assert stored_uploads(server_settings, "kb3") == ["escape.txt"]
        if server_settings.database_url is None:
            (stored,) = (home / "uploads" / "kb3").rglob("*.txt")
            assert stored.parent.parent == home / "uploads" / "kb3"
        else:  # ingested from a local copy that is gone once ingested
            assert not list((home / "spool").iterdir())
        assert not list(home.parent.glob("escape.txt"))
    assert clean_name("..\\..\\evil.md") == "evil.md"
    assert clean_name("a/b/\x00c\nd.txt") == "cd.txt"
    assert clean_name("...") == "upload"
    assert clean_name("产品 手册(2024).pdf") == "产品 手册(2024).pdf"


def test_uploads_are_refused_with_precise_errors(server_settings):
    settings = server_settings.model_copy(update={"upload_max_mb": 1, "upload_max_files": 2})
    with serving(settings, LLM) as client:
        cases = [
            (upload(client, "kb4", ("big.txt", b"x" * (1024 * 1024 + 1))), 413, "upload_too_large"),
            (upload(client, "kb4", ("run.exe", b"MZ")), 415, "unsupported_type"),
            (upload(client, "kb4", *[(f"{i}.txt", b"t") for i in range(3)]), 400, "bad_multipart"),
            (client.post("/v1/kbs/kb4/documents", json={"files": []}), 415, "not_multipart"),
            (client.post("/v1/kbs/kb4/documents", files={"other": ("a.txt", b"t")}), 422, None),
            (upload(client, "bad name", ("a.txt", b"t")), 422, None),
            (client.get("/v1/kbs/nope/documents"), 404, "knowledge_base_not_found"),
            (client.post("/v1/kbs/nope/search", json={"query": "x"}), 404, None),
            (client.post("/v1/kbs/shop/search", json={"query": ""}), 422, None),
            (client.delete("/v1/kbs/nope"), 404, "knowledge_base_not_found"),
        ]
        for response, status, code in cases:
            assert response.status_code == status, (response.request.url, response.text)
            if code is not None:
                assert response.json()["error"]["code"] == code
        assert client.get("/v1/kbs").json()[0]["name"] == "shop", "nothing was created"

        chunked = client.post(
            "/v1/kbs/kb4/documents",
            content=iter([b"--x\r\n"]),
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
        assert chunked.status_code == 411


def test_dropping_a_knowledge_base_removes_it_and_its_uploads(server_settings):
    with serving(server_settings, LLM) as client:
        upload(client, "gone", ("a.txt", POLICY.encode()), stream="false")
        assert client.post("/v1/kbs/gone/search", json={"query": "退货"}).json()["hits"]
        assert client.delete("/v1/kbs/gone").json() == {"kb": "gone", "dropped": True}
        assert "gone" not in [kb["name"] for kb in client.get("/v1/kbs").json()]
        assert client.get("/v1/kbs/gone/documents").status_code == 404
        assert stored_uploads(server_settings, "gone") == []


def test_history_and_question_limits(server_settings):
    settings = server_settings.model_copy(update={"max_question_chars": 10})
    with serving(settings, LLM) as client:
        for path in ("/v1/chat/stream", "/v1/chat"):
            response = client.post(path, json={"question": "x" * 11})
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "question_too_long"
    settings = server_settings.model_copy(update={"max_history_chars": 10})
    with serving(settings, LLM) as client:
        messages = [
            {"role": "user", "content": "an earlier question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "now?"},
        ]
        response = client.post("/v1/chat/completions", json={"model": "shop", "messages": messages})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "history_too_long"


def test_a_document_id_never_reaches_outside_its_upload(server_settings):
    """A .jsonl line whose id names a path under the uploads (the home path used to be
    visible in document ids) is only a name: deleting it removes that document, no file of
    another knowledge base, and no response carries a server path."""
    home = server_settings.home
    with serving(server_settings, LLM) as client:
        upload(client, "other", ("keep.txt", POLICY.encode()), stream="false")
        assert stored_uploads(server_settings, "other") == ["keep.txt"]
        hostile_id = f"{home}/uploads/A/../x"
        line = json.dumps({"id": hostile_id, "text": "hostile document"})
        report = upload(client, "A", ("lines.jsonl", line.encode()), stream="false").json()
        assert report["ingested"] == ["lines.jsonl"]
        documents = client.get("/v1/kbs/A/documents").json()
        assert [d["doc_id"] for d in documents] == [hostile_id]

        deleted = client.delete(f"/v1/kbs/A/documents/{quote(hostile_id, safe='')}")
        assert deleted.status_code == 200, deleted.text
        assert stored_uploads(server_settings, "other") == ["keep.txt"], "another kb's upload"
        assert client.get("/v1/kbs/other/documents").json()

        upload(client, "A", ("plain.txt", b"a plain uploaded document"), stream="false")
        responses = [
            client.get("/v1/kbs/A/documents"),
            client.post("/v1/kbs/A/search", json={"query": "plain document", "k": 5}),
            client.get("/v1/kbs"),
            client.get("/v1/kbs/missing/documents"),
            upload(client, "A", ("plain.txt", b"a plain uploaded document")),
        ]
        for response in responses:
            assert str(home) not in response.text, (response.request.url, response.text)
            assert "/uploads/" not in response.text
        (document,) = responses[0].json()
        assert document["doc_id"].startswith("upload-") and document["source"] == "plain.txt"


def test_different_names_are_different_uploads(server_settings):
    """Names that clean to the same file name are still distinct uploads."""
    with serving(server_settings, LLM) as client:
        pairs = [("../../etc/passwd.txt", "/etc/passwd.txt"), ("a\x01b.txt", "a\nb.txt")]
        for first, second in pairs:
            one = upload(client, "names", (first, b"first file"), stream="false").json()
            two = upload(client, "names", (second, b"second file"), stream="false").json()
            assert one["ingested"] and two["ingested"], (one, two)
        sources = {d["source"] for d in client.get("/v1/kbs/names/documents").json()}
        assert len(sources) == 4 and {"../../etc/passwd.txt", "/etc/passwd.txt"} <= sources


def test_a_null_byte_in_a_document_id_is_a_json_404(server_settings):
    with serving(server_settings, LLM) as client:
        response = client.delete("/v1/kbs/shop/documents/%00")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "document_not_found"
