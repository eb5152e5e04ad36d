"""Text clean-up shared by the loaders: one normal form for everything we index."""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_CJK = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
# A line break between two CJK characters is a layout wrap (PDF, hard-wrapped text).
_CJK_WRAP = re.compile(rf"(?<=[{_CJK}])[ \t]*\n[ \t]*(?=[{_CJK}])")
_HYPHEN_WRAP = re.compile(r"(?<=[a-z])-\n(?=[a-z])")
# A line break inside an English sentence (the next line goes on in lower case) is a wrap too.
_LATIN_WRAP = re.compile(r"(?<=[A-Za-z0-9,:;])[ \t]*\n[ \t]*(?=[a-z0-9(])")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")


def clean_text(text: str, *, unwrap: bool = False) -> str:
    """Normalize line ends, drop control characters, fold spaces and blank lines.

    ``unwrap`` also joins lines that a layout broke (PDF pages): CJK characters split by a
    line break, English words hyphenated across lines and English sentences broken mid-way.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", _CONTROL.sub("", text))
    text = _SPACES.sub(" ", text)
    if unwrap:
        text = _LATIN_WRAP.sub(" ", _HYPHEN_WRAP.sub("", _CJK_WRAP.sub("", text)))
    lines = (line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
