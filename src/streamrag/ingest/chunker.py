"""Chinese-aware chunking: whole sentences, heading context, configurable size and overlap.

A document arrives as :class:`Block` s (text with its heading path and page). Consecutive blocks
under the same heading path form a section; chunks never cross sections. Inside a section the
text is cut only between sentences (Chinese 。！？；… and English . ! ? ; and line ends), except
when one sentence alone is longer than the chunk size.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

# A sentence ends after CJK terminators, or after ASCII ones followed by white space, together
# with any closing quotes or brackets; a line break also ends one.
_SENTENCE_END = re.compile(
    r"""(?:[。！？；…]+[”’」』）》\]\)"']*\s*)"""
    r"""|(?:[.!?;]+[”’"'\)\]]*(?:\s+|$))"""
    r"""|(?:\n+)"""
)
# Where an over-long sentence may be cut, best first: clause marks, then any white space.
_SOFT_BREAKS = (re.compile(r"[，、,：:]\s*"), re.compile(r"\s+"))


@dataclass(frozen=True, slots=True)
class Block:
    """A run of document text with where it stands."""

    text: str
    headings: tuple[str, ...] = ()
    page: int | None = None


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    """A chunk before it is embedded and stored."""

    text: str
    headings: tuple[str, ...]
    page_start: int | None
    page_end: int | None


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Return ``(start, end)`` spans covering ``text``, one per sentence (white space kept)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if end > start:
            spans.append((start, end))
            start = end
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def chunk_blocks(blocks: Sequence[Block], size: int, overlap: int) -> list[ChunkDraft]:
    """Cut ``blocks`` into chunks of at most ``size`` characters with ``overlap`` carried over."""
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, size): overlap={overlap}, size={size}")
    drafts: list[ChunkDraft] = []
    for headings, section in _sections(blocks):
        text, page_starts, pages = _join(section)
        for start, end in _pack(text, size, overlap):
            piece = text[start:end]
            stripped = piece.strip()
            if not stripped:
                continue
            start += len(piece) - len(piece.lstrip())
            end = start + len(stripped)
            drafts.append(
                ChunkDraft(
                    text=stripped,
                    headings=headings,
                    page_start=_page_at(page_starts, pages, start),
                    page_end=_page_at(page_starts, pages, end - 1),
                )
            )
    return drafts


def _sections(blocks: Sequence[Block]) -> Iterator[tuple[tuple[str, ...], list[Block]]]:
    current: list[Block] = []
    for block in blocks:
        if current and block.headings != current[0].headings:
            yield current[0].headings, current
            current = []
        current.append(block)
    if current:
        yield current[0].headings, current


def _join(section: list[Block]) -> tuple[str, list[int], list[int | None]]:
    """Join a section's blocks, remembering at which offset each page starts."""
    parts: list[str] = []
    page_starts: list[int] = []
    pages: list[int | None] = []
    offset = 0
    for block in section:
        if parts:
            parts.append("\n")
            offset += 1
        page_starts.append(offset)
        pages.append(block.page)
        parts.append(block.text)
        offset += len(block.text)
    return "".join(parts), page_starts, pages


def _page_at(page_starts: list[int], pages: list[int | None], offset: int) -> int | None:
    return pages[max(bisect.bisect_right(page_starts, offset) - 1, 0)]


def _pack(text: str, size: int, overlap: int) -> Iterator[tuple[int, int]]:
    """Yield chunk spans made of whole sentences; over-long sentences are cut softly."""
    window: list[tuple[int, int]] = []  # sentences of the chunk being built
    for start, end in split_sentences(text):
        if end - start > size:
            if window:
                yield window[0][0], window[-1][1]
                window = []
            yield from _cut_long(text, start, end, size)
            continue
        if window and end - window[0][0] > size:
            yield window[0][0], window[-1][1]
            window = _tail(window, overlap)
            while window and end - window[0][0] > size:
                window.pop(0)
        window.append((start, end))
    if window:
        yield window[0][0], window[-1][1]


def _tail(window: list[tuple[int, int]], overlap: int) -> list[tuple[int, int]]:
    """The last sentences of ``window`` that fit in ``overlap`` characters."""
    kept: list[tuple[int, int]] = []
    for span in reversed(window):
        if window[-1][1] - span[0] > overlap:
            break
        kept.insert(0, span)
    return kept


def _cut_long(text: str, start: int, end: int, size: int) -> Iterator[tuple[int, int]]:
    while end - start > size:
        limit = start + size
        cut = limit
        for pattern in _SOFT_BREAKS:
            breaks = [m.end() for m in pattern.finditer(text, start + size // 2, limit)]
            if breaks:
                cut = breaks[-1]
                break
        yield start, cut
        start = cut
    if end > start:
        yield start, end
