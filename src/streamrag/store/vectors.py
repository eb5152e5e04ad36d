"""Exact in-memory vector search over the vectors a store holds (normalized, so dot = cosine)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


class VectorIndex:
    """A matrix of vectors with their row ids and chunk ids, tagged with the store generation
    it reflects."""

    def __init__(
        self,
        ids: np.ndarray | None = None,
        matrix: np.ndarray | None = None,
        generation: int = -1,
        chunk_ids: np.ndarray | None = None,
    ) -> None:
        self.ids = ids if ids is not None else np.empty(0, dtype=np.int64)
        self.chunk_ids = chunk_ids if chunk_ids is not None else np.empty(0, dtype=object)
        self.matrix = matrix if matrix is not None else np.empty((0, 0), dtype=np.float32)
        self.generation = generation

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, str, bytes]], generation: int) -> VectorIndex:
        ids: list[int] = []
        chunk_ids: list[str] = []
        blobs: list[bytes] = []
        for row_id, chunk_id, blob in rows:
            ids.append(row_id)
            chunk_ids.append(chunk_id)
            blobs.append(blob)
        if not ids:
            return cls(generation=generation)
        flat = np.frombuffer(b"".join(blobs), dtype=np.float32)
        matrix = flat.reshape(len(ids), -1)
        return cls(
            np.asarray(ids, dtype=np.int64), matrix, generation, np.asarray(chunk_ids, dtype=object)
        )

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[str, float]]:
        """The chunk ids of the ``k`` most similar rows, optionally only among ``allowed``
        row ids."""
        if len(self.ids) == 0 or k <= 0:
            return []
        ids: Any = self.chunk_ids
        matrix = self.matrix
        if allowed is not None:
            mask = np.isin(self.ids, allowed)
            ids, matrix = self.chunk_ids[mask], self.matrix[mask]
            if len(ids) == 0:
                return []
        # einsum, not ``@``: BLAS would wake its thread pool, whose spinning threads then
        # slow the next query embedding by ~20 ms on two cores (measured); one core does a
        # 100k x 384 product in ~13 ms either way.
        scores = np.einsum("ij,j->i", matrix, np.asarray(query, dtype=np.float32))
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(str(ids[i]), float(scores[i])) for i in top]
