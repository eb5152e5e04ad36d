"""The text word lists are matched on: each character folded the same way, separators left out.

``敏-感-詞``, ``敏 感 词`` and ``ＢａｄＷｏｒｄ`` have the skeletons ``敏感词`` and ``badword``:
NFKC (full-width to half-width), case folding, traditional to simplified Chinese one
character at a time (OpenCC's ``t2s`` table), and no white space, punctuation or symbols —
except the punctuation that ends a clause or a sentence (``BOUNDARIES``: ，。、；：！？ , ; : ! ?
… and line breaks), which becomes ``BOUNDARY``: nothing is matched across it, and text before
it need not wait for what follows (held text is released at the next comma). :class:`Skeleton`
keeps where each of its characters came from, so a match maps back to the span of the
original text it covers, separators included.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

_SEPARATOR_CATEGORIES = ("Z", "P", "S", "C")  # spaces, punctuation, symbols, controls
BOUNDARIES = frozenset("，。、；：！？,;:!?…\n\r")  # (after NFKC: "，" is ",", "；" is ";" ...)
BOUNDARY = "\x00"


@functools.cache
def _converter():  # type: ignore[no-untyped-def]
    import opencc

    return opencc.OpenCC("t2s")


@functools.lru_cache(maxsize=65536)
def fold(char: str) -> str:
    """One character folded ("" for a separator, ``BOUNDARY`` for a clause's end); may be
    several ("ß" folds to "ss")."""
    if char in BOUNDARIES:  # before NFKC, which makes "…" three dots
        return BOUNDARY
    folded = unicodedata.normalize("NFKC", char).casefold()
    kept = []
    for part in folded:
        if part in BOUNDARIES:
            kept.append(BOUNDARY)
            continue
        if unicodedata.category(part)[0] in _SEPARATOR_CATEGORIES:
            continue
        if not part.isascii():
            simplified = _converter().convert(part)
            part = simplified if len(simplified) == 1 else part
        kept.append(part)
    return "".join(kept)


def fold_text(text: str) -> str:
    """The skeleton of ``text`` as a string (what a word-list entry is stored as)."""
    return "".join(fold(char) for char in text)


@dataclass(slots=True)
class Skeleton:
    """The folded characters of a text and, for each, the offset in the text it came from."""

    chars: list[str]
    origin: list[int]

    @classmethod
    def of(cls, text: str) -> Skeleton:
        skeleton = cls([], [])
        for index, char in enumerate(text):
            for part in fold(char):
                skeleton.chars.append(part)
                skeleton.origin.append(index)
        return skeleton

    def text(self) -> str:
        return "".join(self.chars)
