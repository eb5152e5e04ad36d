"""The typed events of one answer run: the single stream every surface adapts.

Every event carries ``type``, ``run_id`` and a per-run monotonic ``seq``; :meth:`Event.to_dict`
is its stable JSON form. The answer is exactly the concatenation of the ``token`` texts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from streamrag.records import Chunk

FinishReason = Literal["stop", "length", "cancelled", "error", "interrupted", "moderated"]
Stage = Literal["condensing", "retrieving", "waiting", "generating"]


@dataclass(frozen=True, slots=True)
class Source:
    """A numbered source as the model saw it: [number] in the prompt. ``score`` is the
    retrieval score (None where it was not recorded: a source read back for an old run)."""

    number: int
    chunk_id: str
    doc_id: str
    title: str
    source: str
    location: str
    score: float | None
    text: str

    @classmethod
    def from_chunk(cls, number: int, chunk: Chunk, score: float | None) -> Source:
        return cls(
            number=number,
            chunk_id=chunk.chunk_id,
            doc_id=chunk.doc_id,
            title=chunk.title,
            source=chunk.source,
            location=chunk.location,
            score=score,
            text=chunk.text,
        )


@dataclass(frozen=True, slots=True)
class ModerationCount:
    """How often a moderation rule fired in a run: on the question (``input``) or the
    answer (``output``), by its class and action."""

    target: str
    rule_class: str
    action: str
    count: int


@dataclass(frozen=True, slots=True)
class CitedSource:
    """A source cited in the answer: by a marker at ``offset``, or ``inferred`` for the
    sentence ending there. ``supported``: whether the source holds the sentence (``score``:
    the share of its terms found there); None where it was not checked."""

    number: int
    chunk_id: str
    offset: int
    supported: bool | None = None
    score: float | None = None
    inferred: bool = False


class _MadeOnce:
    """A slot for an immutable object's JSON text, outside its dataclass fields."""

    __slots__ = ("_json",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event(_MadeOnce):
    """Base of all events."""

    type: ClassVar[str]
    run_id: str
    seq: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON, made once: an event does not change, and the surfaces,
        the event log and the other replicas all send the same text."""
        try:
            return self._json
        except AttributeError:
            text = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))
            object.__setattr__(self, "_json", text)
            return text


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    type: ClassVar[str] = "run.started"
    session_id: str
    trace_id: str
    question: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Status(Event):
    """The stage the run has reached; ``waiting``: for the model, busy with
    ``queue_position`` other answers first."""

    type: ClassVar[str] = "status"
    stage: Stage
    standalone_question: str | None = None
    queue_position: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Sources(Event):
    type: ClassVar[str] = "sources"
    sources: list[Source]
    degraded: str | None = None  # why retrieval fell back to BM25 alone


@dataclass(frozen=True, slots=True, kw_only=True)
class Token(Event):
    type: ClassVar[str] = "token"
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Citation(Event):
    """A source cited by the sentence that just finished (see :class:`CitedSource`)."""

    type: ClassVar[str] = "citation"
    number: int
    chunk_id: str
    offset: int
    supported: bool | None = None
    score: float | None = None
    inferred: bool = False

    def cited(self) -> CitedSource:
        return CitedSource(
            self.number, self.chunk_id, self.offset, self.supported, self.score, self.inferred
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Moderation(Event):
    """A moderation rule fired on the question (``input``) or the answer (``output``): its
    class and action (``mask``, ``block``, ``refuse``), never the text it matched."""

    type: ClassVar[str] = "moderation"
    target: Literal["input", "output"]
    rule_class: str
    action: Literal["mask", "block", "refuse"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage(Event):
    type: ClassVar[str] = "usage"
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Event):
    type: ClassVar[str] = "error"
    code: str
    message: str
    retryable: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Done(Event):
    type: ClassVar[str] = "done"
    answer: str
    citations: list[CitedSource]
    finish_reason: FinishReason
    timings: dict[str, float]
    usage: dict[str, int]
    invalid_citations: int = 0
    standalone_question: str | None = None
    sources: list[str] = field(default_factory=list)  # chunk ids, in source order
    moderation: list[ModerationCount] = field(default_factory=list)


def answer_of(events: Iterable[Event]) -> str:
    """The answer so far: the concatenation of the token texts."""
    return "".join(event.text for event in events if isinstance(event, Token))


def ending(
    events: Sequence[Event], *, code: str, message: str, finish_reason: FinishReason
) -> list[Event]:
    """An ``error`` (retryable) and a ``done`` that end a run whose own end will never come
    (its process died, or its log cannot be written), after ``events``: the done carries the
    answer, citations and sources those events hold."""
    seq = events[-1].seq + 1 if events else 0
    run_id = events[0].run_id if events else ""
    return [
        Error(run_id=run_id, seq=seq, code=code, message=message, retryable=True),
        Done(
            run_id=run_id,
            seq=seq + 1,
            answer=answer_of(events),
            citations=[e.cited() for e in events if isinstance(e, Citation)],
            finish_reason=finish_reason,
            timings={},
            usage={},
            sources=next(
                ([s.chunk_id for s in e.sources] for e in events if isinstance(e, Sources)), []
            ),
        ),
    ]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (RunStarted, Status, Sources, Token, Citation, Moderation, Usage, Error, Done)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """The typed event of a JSON form made by :meth:`Event.to_dict`."""
    fields = dict(data)
    kind = fields.pop("type", None)
    cls = EVENT_TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}")
    if cls is Sources:
        fields["sources"] = [Source(**source) for source in fields["sources"]]
    elif cls is Done:
        fields["citations"] = [CitedSource(**cited) for cited in fields["citations"]]
        fields["moderation"] = [ModerationCount(**m) for m in fields.get("moderation", [])]
    return cls(**fields)
