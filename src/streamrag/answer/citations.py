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

from streamrag.answer.events import Citation, Event, Sources, Token
from streamrag.answer.run import UNNUMBERED, RunState

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
    """A ``citation`` event after each token that closes a marker naming a source; a marker
    naming no source is counted in ``run.invalid_citations``."""
    scanner = CitationScanner()
    by_number: dict[int, str] = {}
    async for event in events:
        yield event
        if isinstance(event, Sources):
            by_number = {source.number: source.chunk_id for source in event.sources}
        elif isinstance(event, Token):
            for marker in scanner.feed(event.text):
                chunk_id = by_number.get(marker.number)
                if chunk_id is None:
                    run.invalid_citations += 1
                    continue
                yield Citation(
                    run_id=run.run_id,
                    seq=UNNUMBERED,
                    number=marker.number,
                    chunk_id=chunk_id,
                    offset=marker.offset,
                )
