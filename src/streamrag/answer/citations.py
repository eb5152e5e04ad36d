"""Citation markers found in an answer while it streams: [1], [1][3], [1, 3], 【1】.

The model writes markers token by token, so a marker may arrive in pieces ("[", "1", "]").
:class:`CitationScanner` keeps the part of the answer that may still become a marker and
reports each marker as soon as its closing bracket arrives, with the character offset of its
opening bracket in the answer. :func:`cite` is the engine's transformer that turns them into
``citation`` events.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from streamrag.answer.events import Citation, Error, Event, Sources, Token, Usage
from streamrag.answer.run import UNNUMBERED, RunState
from streamrag.answer.support import Sentence, SentenceSplitter, SupportJudge

_OPEN = "[【"
_CLOSE = {"[": "]", "【": "】"}
# What may stand between the brackets: numbers separated by commas, 、 or spaces.
_INSIDE = re.compile(r"\s*\d{1,3}(?:\s*[,，、]\s*\d{1,3})*\s*")
_NUMBER = re.compile(r"\d+")
MAX_MARKER_CHARS = 24  # a longer bracketed run is text, not a marker


@dataclass(frozen=True, slots=True)
class Marker:
    """One cited source number and where its marker starts in the answer."""

    number: int
    offset: int


class CitationScanner:
    """Feed answer deltas in order; get back the markers each delta completed."""

    def __init__(self) -> None:
        self._length = 0  # characters fed so far
        self._open_at: int | None = None  # offset of an unclosed "[" or "【"
        self._open_char = ""
        self._inside = ""

    def feed(self, delta: str) -> list[Marker]:
        found: list[Marker] = []
        for index, char in enumerate(delta):
            offset = self._length + index
            if self._open_at is None:
                if char in _OPEN:
                    self._start(offset, char)
                continue
            if char == _CLOSE[self._open_char]:
                if _INSIDE.fullmatch(self._inside):
                    found += [
                        Marker(int(number), self._open_at)
                        for number in _NUMBER.findall(self._inside)
                    ]
                self._open_at = None
            elif char in _OPEN:
                self._start(offset, char)  # "[[1]": the inner bracket opens the marker
            else:
                self._inside += char
                if len(self._inside) > MAX_MARKER_CHARS or not _could_continue(self._inside):
                    self._open_at = None
        self._length += len(delta)
        return found

    def _start(self, offset: int, char: str) -> None:
        self._open_at = offset
        self._open_char = char
        self._inside = ""


def _could_continue(inside: str) -> bool:
    """Whether ``inside`` is still the beginning of a valid list of numbers."""
    return all(char.isdigit() or char in " ,，、" for char in inside)


async def cite(events: AsyncIterator[Event], run: RunState) -> AsyncIterator[Event]:
    """``citation`` events, each as the sentence it belongs to finishes: one per marker that
    names a source, with whether that source supports the sentence, and an inferred one for a
    sentence without a marker that one source clearly supports. A marker naming no source is
    counted in ``run.invalid_citations``."""
    scanner, sentences = CitationScanner(), SentenceSplitter()
    judge = SupportJudge([])
    markers: list[Marker] = []
    by_number: dict[int, str] = {}

    def judged(sentence: Sentence, answer: str) -> list[Citation]:
        text = answer[sentence.start : sentence.close]
        mine = [m for m in markers if m.offset < sentence.close]
        del markers[: len(mine)]
        found = [(m.number, m.offset, *judge.judge(text, m.number), False) for m in mine]
        if not mine and (inferred := judge.infer(text)) is not None:
            found.append((inferred[0], sentence.end, inferred[1], True, True))
        return [
            Citation(
                run_id=run.run_id,
                seq=UNNUMBERED,
                number=number,
                chunk_id=by_number[number],
                offset=offset,
                supported=supported,
                score=score,
                inferred=inferred,
            )
            for number, offset, score, supported, inferred in found
        ]

    async for event in events:
        if isinstance(event, Token):
            yield event
            for marker in scanner.feed(event.text):
                if marker.number in by_number:
                    markers.append(marker)
                else:
                    run.invalid_citations += 1
            for sentence in sentences.feed(event.text):
                for citation in judged(sentence, sentences.text):
                    yield citation
            continue
        if isinstance(event, Sources):
            by_number = {source.number: source.chunk_id for source in event.sources}
            judge = SupportJudge(event.sources, run.standalone)
        elif isinstance(event, Usage | Error) and (last := sentences.finish()) is not None:
            for citation in judged(last, sentences.text):  # the answer is over: its last
                yield citation
            sentences = SentenceSplitter()
        yield event
