"""Retrieval: BM25 terms, vector search, and their fusion."""

from streamrag.retrieve.retriever import MODES, Mode, Retriever
from streamrag.retrieve.tokenize import tokenize

__all__ = ["MODES", "Mode", "Retriever", "tokenize"]
