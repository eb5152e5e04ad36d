"""The Embedder protocol: texts in, L2-normalized float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    """Turns documents and queries into vectors of one fixed model."""

    @property
    def name(self) -> str:
        """A stable identity of the model; a knowledge base remembers it."""
        ...

    @property
    def dim(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Shape ``(len(texts), dim)``, rows L2-normalized."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """Shape ``(dim,)``, L2-normalized."""
        ...


def normalize(matrix: np.ndarray) -> np.ndarray:
    """Row-normalize (or normalize a single vector) to unit length, as float32."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
