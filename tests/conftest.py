"""Shared fixtures: an isolated data directory and embedders for tests."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from streamrag import KnowledgeBase, load_settings
from streamrag.config import Settings
from streamrag.embed import normalize


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
