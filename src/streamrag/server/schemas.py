"""Request bodies shared by the routes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from streamrag.kb import KB_NAME_PATTERN
from streamrag.store import SearchFilter

ID_PATTERN = r"^[\w.-]{1,64}$"  # session ids


class Filters(BaseModel):
    """Restrict retrieval to some documents."""

    doc_ids: list[str] = Field(default_factory=list, max_length=1000)
    source_glob: str | None = Field(None, max_length=1000)
    meta: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=50)

    def to_filter(self) -> SearchFilter:
        return SearchFilter(tuple(self.doc_ids), self.source_glob, tuple(self.meta.items()))


class ChatRequest(BaseModel):
    """A question to answer as a stream of events."""

    question: str = Field(min_length=1, description="The question, in Chinese or English.")
    session_id: str | None = Field(None, pattern=ID_PATTERN, description="Continue a session.")
    kb: str | None = Field(None, pattern=KB_NAME_PATTERN, description="Knowledge base name.")
    top_k: int | None = Field(None, ge=1, le=50, description="Sources to retrieve.")
    filters: Filters | None = None


class SearchRequest(BaseModel):
    """A search in one knowledge base."""

    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(10, ge=1, le=100, description="How many chunks.")
    mode: Literal["hybrid", "vector", "bm25"] = "hybrid"
    filters: Filters | None = None


class SessionChange(BaseModel):
    title: str = Field(min_length=1, max_length=200)
