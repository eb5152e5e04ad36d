"""What the OpenAPI document says beyond what FastAPI reads off the routes: the error
responses each operation can give, and the schema of every server-sent event.

An event stream is documented the OpenAPI 3.1 way: the ``text/event-stream`` schema
describes one event (``event``, ``id``, ``data``), and ``data`` is JSON whose schema is that
event type's (``contentMediaType`` + ``contentSchema``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, get_args

from fastapi import FastAPI
from pydantic import BaseModel, Field, TypeAdapter

from streamrag.answer.events import EVENT_TYPES
from streamrag.ingest.pipeline import EventKind, IngestEvent

_REF = "#/components/schemas/{model}"


class ErrorDetail(BaseModel):
    code: str = Field(
        description="Stable, machine-readable: 'knowledge_base_not_found', 'unauthorized'…"
    )
    message: str = Field(description="What was wrong, for a person.")
    details: list[dict[str, Any]] | None = Field(
        None, description="For 422: each field that does not match the schema, and why."
    )


class ErrorResponse(BaseModel):
    """Every error the API returns, whatever its status."""

    error: ErrorDetail


class FailedFile(BaseModel):
    path: str = Field(description="The file's name as uploaded.")
    reason: str = Field(description="Why it could not be read: 'corrupt or unreadable PDF'…")


class IngestSummary(BaseModel):
    """What an ingest did: files by outcome, chunks embedded, chunks removed."""

    ingested: list[str]
    unchanged: list[str]
    failed: list[FailedFile]
    ignored: list[str]
    chunks: int
    removed: int
    fusion: str | None = Field(
        None, description="How hybrid search fuses now, when this ingest chose it again."
    )
    seconds: float


_WHY = {
    400: "The body is not well-formed (not UTF-8, broken multipart…).",
    401: "STREAMRAG_API_KEYS is set and no valid 'Authorization: Bearer <key>' was sent.",
    404: "The knowledge base, document, session or run does not exist.",
    411: "An upload needs a Content-Length header.",
    413: "The body, the question or the history is over its configured limit.",
    415: "Not multipart/form-data, or a file type no loader reads.",
    422: "The request does not match the schema, or names something invalid.",
    502: "The run failed: the model or a service behind streamrag failed.",
    503: "PostgreSQL (STREAMRAG_DATABASE_URL) or the replicas' Redis (STREAMRAG_REDIS_URL)"
    " cannot be reached; retry after the Retry-After seconds.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of an operation that can fail with these statuses (always JSON,
    whatever the operation's own media type)."""
    return {status: _error(status) for status in statuses}


def _error(status: int) -> dict[str, Any]:
    schema = {"$ref": _REF.format(model="ErrorResponse")}
    return {
        "description": _WHY.get(status, HTTPStatus(status).phrase),
        "content": {"application/json": {"schema": schema}},
    }


def _event_schemas() -> dict[str, dict[str, Any]]:
    """JSON schemas of the answer's events (``run.started`` … ``done``) and of the ingest
    progress events, by component name."""
    schemas: dict[str, dict[str, Any]] = {}
    for kind, cls in EVENT_TYPES.items():
        schema = TypeAdapter(cls).json_schema(ref_template=_REF, mode="serialization")
        schemas.update(schema.pop("$defs", {}))
        schema["properties"] = {"type": {"const": kind}, **schema["properties"]}
        schema["required"] = ["type", *schema.get("required", [])]
        schemas[cls.__name__ + "Event"] = schema
    progress = TypeAdapter(IngestEvent).json_schema(ref_template=_REF)
    progress["description"] = "Ingest progress; fields that do not apply are left out."
    schemas["IngestProgress"] = progress
    report = IngestSummary.model_json_schema(ref_template=_REF)
    schemas.update(report.pop("$defs", {}))
    schemas["IngestSummary"] = report
    return schemas


def _json_data(component: str) -> dict[str, Any]:
    return {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": _REF.format(model=component)},
    }


def _event(name: str, data: dict[str, Any], id_description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "id": {"type": "string", "description": id_description},
            "data": data,
        },
    }


def event_stream(
    description: str,
    events: Iterable[tuple[str, dict[str, Any]]],
    id_description: str,
    *,
    json_component: str | None = None,
) -> dict[int | str, dict[str, Any]]:
    """The 200 response of an SSE operation whose events are ``(event name, data schema)``;
    ``json_component`` names the schema of the JSON answer it gives when not streaming."""
    content: dict[str, Any] = {
        "text/event-stream": {
            "schema": {
                "type": "object",  # one event; FastAPI's default for a stream says "string"
                "oneOf": [_event(name, data, id_description) for name, data in events],
            }
        }
    }
    if json_component is not None:
        content["application/json"] = {"schema": {"$ref": _REF.format(model=json_component)}}
    return {200: {"description": description, "content": content}}


RUN_EVENTS = [(kind, _json_data(cls.__name__ + "Event")) for kind, cls in EVENT_TYPES.items()]
RUN_EVENT_ID = "'<run_id>:<seq>': send it back as Last-Event-ID to resume after it."
INGEST_EVENTS = [
    *((kind, _json_data("IngestProgress")) for kind in get_args(EventKind)),
    ("error", _json_data("ErrorDetail")),
    ("done", _json_data("IngestSummary")),
]


_OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {"message": {"type": "string"}, "type": {}, "code": {}},
        }
    },
}
_CHOICES = {"type": "array", "items": {"type": "object", "required": ["index"]}}


def _openai_object(kind: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": kind},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": _CHOICES,
            "sources": {"type": "array", "items": {"$ref": _REF.format(model="Source")}},
            "citations": {"type": "array", "items": {"$ref": _REF.format(model="CitedSource")}},
            **properties,
        },
    }


OPENAI_SCHEMAS = {
    "ChatCompletion": _openai_object("chat.completion", usage={"type": "object"}),
    "ChatCompletionChunk": _openai_object("chat.completion.chunk"),
    "TextCompletion": _openai_object("text_completion", usage={"type": "object"}),
}


def _openai_events(chunk_component: str) -> list[tuple[str, dict[str, Any]]]:
    chunk = {"$ref": _REF.format(model=chunk_component)}
    data = {
        "type": "string",
        "anyOf": [
            {"const": "[DONE]"},
            {
                "contentMediaType": "application/json",
                "contentSchema": {"oneOf": [chunk, _OPENAI_ERROR]},
            },
        ],
    }
    return [("message", data)]  # OpenAI's streams name no event


COMPLETION_EVENTS = _openai_events("ChatCompletionChunk")
TEXT_COMPLETION_EVENTS = _openai_events("TextCompletion")  # a chunk is a text_completion too


def run_stream(description: str) -> dict[int | str, dict[str, Any]]:
    """The 200 response of an operation that streams a run's events."""
    return event_stream(description, RUN_EVENTS, RUN_EVENT_ID)


def complete_openapi(app: FastAPI) -> None:
    """Finish the app's OpenAPI document with what middleware and dependencies do to every
    operation: 401 (and 503) where a key is required, 413 where a body is read, 422 in the
    error shape; and the event schemas the SSE responses refer to."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()
        for operations in spec["paths"].values():
            for operation in operations.values():
                responses = operation["responses"]
                if "422" in responses:
                    responses["422"] = _error(422)
                if "requestBody" in operation:
                    responses.update({"400": _error(400), "413": _error(413)})
                if operation.get("security"):  # a route with data: its store may be away
                    responses.update({"401": _error(401), "503": _error(503)})
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        schemas.update(_event_schemas())
        schemas.update(OPENAI_SCHEMAS)
        error_schema = ErrorResponse.model_json_schema(ref_template=_REF)
        schemas.update(error_schema.pop("$defs"))
        schemas["ErrorResponse"] = error_schema
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
