"""Embedding backends: an OpenAI-compatible endpoint, and refusing to mix models."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from streamrag import KnowledgeBase, load_settings
from streamrag.config import Settings
from streamrag.errors import EmbeddingModelMismatch

from conftest import HashEmbedder


class EmbeddingsHandler(BaseHTTPRequestHandler):
    """``POST /v1/embeddings`` with deterministic 8-d vectors; records the requests."""

    requests: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        EmbeddingsHandler.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        data = []
        for index, text in enumerate(body["input"]):
            digest = hashlib.sha256(text.encode()).digest()
            data.append(
                {"object": "embedding", "index": index, "embedding": [b / 255 for b in digest[:8]]}
            )
        payload = json.dumps(
            {
                "object": "list",
                "data": data[::-1],
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def embeddings_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EmbeddingsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    EmbeddingsHandler.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_compatible_embeddings_endpoint(embeddings_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path / "home",
        embed_base_url=embeddings_url,
        embed_api_key="sk-test",
        embed_model="my-embedder",
    )
    (tmp_path / "a.txt").write_text("第一段。", encoding="utf-8")
    with KnowledgeBase("api", settings=settings) as kb:
        report = kb.ingest([tmp_path / "a.txt"])
        assert report.ok and report.chunks == 1
        assert kb.embed_model == "api:my-embedder"
        assert kb.store.get_meta("embed_dim") == "8"
        [hit] = kb.search("第一段", k=1, mode="vector")
        assert hit.chunk.text == "第一段。"
    requests = EmbeddingsHandler.requests
    assert {r["path"] for r in requests} == {"/v1/embeddings"}
    assert {r["auth"] for r in requests} == {"Bearer sk-test"}
    assert {r["body"]["model"] for r in requests} == {"my-embedder"}
    assert ["a\n第一段。"] in [r["body"]["input"] for r in requests]
    assert requests[-1]["body"]["input"] == ["第一段"]


def test_api_vectors_come_back_in_input_order(embeddings_url: str) -> None:
    from streamrag.embed.openai_api import OpenAIEmbedder

    embedder = OpenAIEmbedder("m", embeddings_url)
    matrix = embedder.embed_documents(["a", "b", "c"])
    for text, row in zip(["a", "b", "c"], matrix, strict=True):
        assert np.allclose(row, embedder.embed_query(text))


def test_a_knowledge_base_refuses_another_embedding_model(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("退货政策：七天无理由退货。", encoding="utf-8")
    with KnowledgeBase("k", settings=settings, embedder=HashEmbedder()) as kb:
        kb.ingest([tmp_path / "a.txt"])
    explicit = settings.model_copy(update={"embed_model": "use-m3"})
    explicit.model_fields_set.add("embed_model")
    with KnowledgeBase("k", settings=explicit) as kb:
        with pytest.raises(EmbeddingModelMismatch) as error:
            kb.search("退货", mode="hybrid")
        message = str(error.value)
        assert "'test-hash'" in message and "'use-m3'" in message
        assert "streamrag kb reembed k" in message
        with pytest.raises(EmbeddingModelMismatch):
            kb.ingest([tmp_path / "a.txt"])
        assert [h.chunk.text for h in kb.search("退货", mode="bm25")], "BM25 needs no vectors"

        assert kb.reembed() == 1
        assert kb.embed_model == "use-m3" and kb.store.get_meta("embed_dim") == "512"
        [hit] = kb.search("退货政策", k=1, mode="vector")
        assert hit.chunk.text == "退货政策：七天无理由退货。"


def test_an_unconfigured_model_follows_the_knowledge_base(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("Shipping takes two days.", encoding="utf-8")
    use = settings.model_copy(update={"embed_model": "use-m3"})
    use.model_fields_set.add("embed_model")
    with KnowledgeBase("k", settings=use) as kb:
        kb.ingest([tmp_path / "a.txt"])
    assert "embed_model" not in settings.model_fields_set
    with KnowledgeBase("k", settings=settings) as kb:  # default would be e5-small
        assert kb.embedder.name == "use-m3"
        assert kb.search("shipping", k=1)[0].chunk.text == "Shipping takes two days."
