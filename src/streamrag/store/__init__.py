"""Storage for knowledge bases: the Store protocol and the embedded SQLite implementation."""

from streamrag.store.base import ChunkWrite, DocumentWrite, SearchFilter, Store
from streamrag.store.sqlite import SQLiteStore

__all__ = ["ChunkWrite", "DocumentWrite", "SQLiteStore", "SearchFilter", "Store"]
