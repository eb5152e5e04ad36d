"""Knowledge base names: one portable file name on every system, the same rule everywhere."""

from __future__ import annotations

import re

from streamrag.errors import InvalidName


def _any_case(word: str) -> str:  # JSON Schema patterns have no case-insensitive flag
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


_DEVICES = "|".join(
    _any_case(name) for name in ("con", "prn", "aux", "nul", "com[0-9]", "lpt[0-9]")
)
_WORD = r"\p{L}\p{N}_"  # letters of any script, digits and '_': what Python's \w matches
KB_NAME_PATTERN = (
    rf"^(?!(?:{_DEVICES})(?:\.|$))(?!.*\.sqlite$)[{_WORD}](?:[{_WORD}.-]{{0,62}}[{_WORD}-])?$"
)
"""A knowledge base name: 1-64 letters (any script), digits, '_', '-' and '.', neither
starting with '-' or '.' nor ending with '.'; not a name Windows reserves for a device
(``con``, ``nul``, ``com1``, with or without an extension) nor one ending in ``.sqlite``, so
that a name is one portable file name on every system. The API's schema says the same."""
_NAME = re.compile(KB_NAME_PATTERN.replace(_WORD, r"\w"))  # Python's re has no \p{...}


def check_kb_name(name: str) -> str:
    """``name`` if it is a valid knowledge base name (:data:`KB_NAME_PATTERN`), else
    :class:`InvalidName` saying what a name may be."""
    if not _NAME.fullmatch(name):
        raise InvalidName(
            f"invalid knowledge base name {name!r}: use 1-64 letters, digits, '_', '-' or '.',"
            " not starting with '-' or '.', not ending with '.', and not a name Windows"
            " reserves (con, nul, com1, ...)"
        )
    return name
