"""Request bodies and parameters shared by the routes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from streamrag.errors import InvalidName
from streamrag.names import KB_NAME_PATTERN, check_kb_name
from streamrag.store import SearchFilter

ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"  # session ids


def _kb_name(value: str) -> str:
    try:
        return check_kb_name(value)
    except InvalidName as exc:
        raise ValueError(str(exc)) from None


KbName = Annotated[
    str,
    AfterValidator(_kb_name),  # Python's re: the pattern's look-aheads are beyond pydantic's
    WithJsonSchema(
        {"type": "string", "pattern": KB_NAME_PATTERN, "description": "Knowledge base name."}
    ),
]


def _whole(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# integers as JSON Schema has them (9.0 is 9), with their bounds
TopK = Annotated[int, Field(ge=1, le=50), BeforeValidator(_whole)]
HitCount = Annotated[int, Field(ge=1, le=100), BeforeValidator(_whole)]


class Body(BaseModel):
    """A JSON request body, typed as its schema says: no "1" for 1, no 0 for false."""

    model_config = ConfigDict(strict=True)


class Filters(Body):
    """Restrict retrieval to some documents."""

    doc_ids: list[str] = Field(default_factory=list, max_length=1000)
    source_glob: str | None = Field(None, max_length=1000)
    meta: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=50)

    def to_filter(self) -> SearchFilter:
        return SearchFilter(tuple(self.doc_ids), self.source_glob, tuple(self.meta.items()))


class ChatRequest(Body):
    """A question to answer as a stream of events."""

    question: str = Field(min_length=1, description="The question, in Chinese or English.")
    session_id: str | None = Field(None, pattern=ID_PATTERN, description="Continue a session.")
    kb: KbName | None = None
    top_k: TopK | None = Field(None, description="Sources to retrieve.")
    filters: Filters | None = None


class SearchRequest(Body):
    """A search in one knowledge base."""

    query: str = Field(min_length=1, max_length=4000)
    k: HitCount = Field(10, description="How many chunks.")
    mode: Literal["hybrid", "vector", "bm25"] = "hybrid"
    filters: Filters | None = None


class SessionChange(Body):
    title: str = Field(min_length=1, max_length=200)
