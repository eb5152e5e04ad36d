"""Bytes to text: BOMs, UTF-8, UTF-16 without BOM, GB18030 / Big5 and other legacy encodings."""

from __future__ import annotations

import codecs

from charset_normalizer import from_bytes

from streamrag.errors import LoadError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Below this many bytes the detector cannot tell GB18030 from Big5; mainland users dominate.
_SHORT_CJK_BYTES = 24


def decode_text(data: bytes) -> tuple[str, str]:
    """Return ``(text, encoding)``; raise :class:`LoadError` for empty or binary data."""
    if not data.strip():
        raise LoadError("empty file")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _strict(data, encoding), encoding
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    utf16 = _utf16_without_bom(data)
    if utf16 is not None:
        return utf16
    if b"\x00" in data:
        raise LoadError("binary data (NUL bytes), not a text file")
    if len(data) < _SHORT_CJK_BYTES:
        try:
            return data.decode("gb18030"), "gb18030"
        except UnicodeDecodeError:
            pass
    best = from_bytes(data).best()
    if best is None:
        raise LoadError("not text: no character encoding fits these bytes")
    return str(best), best.encoding


def _strict(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise LoadError(f"invalid {encoding} at byte {exc.start}") from exc


def _utf16_without_bom(data: bytes) -> tuple[str, str] | None:
    """UTF-16 text shows NUL bytes in every other position for ASCII-heavy content."""
    if len(data) < 4 or len(data) % 2:
        return None
    even_nuls = data[0::2].count(0)
    odd_nuls = data[1::2].count(0)
    half = len(data) // 2
    for encoding, nuls in (("utf-16-le", odd_nuls), ("utf-16-be", even_nuls)):
        if nuls > half * 0.3:
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError:
                return None
    return None
