"""What the rules look for in text: word lists, regular expressions, built-in PII.

A detector scans the text not yet released (with some released context before it) and
returns the matches that are complete and final, and the offset from which the text must be
held back because a match may still begin there and continue into the next token: for a word
list the longest tail whose skeleton begins an entry (at most the longest entry − 1
characters), for a regular expression the start of a partial match at the end (the ``regex``
module's partial matching) or of a match that more text could still extend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import regex

from streamrag.moderation.skeleton import Skeleton, fold, fold_text

_ASCII_WORD = re.compile(r"[a-z0-9]", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Found:
    """A final match: ``text[begin:end]``."""

    begin: int
    end: int


@dataclass(frozen=True, slots=True)
class Scan:
    """A detector's answer: final matches, and where the text must be held from
    (``len(text)``: nothing to hold)."""

    found: list[Found]
    hold_from: int


class Detector(Protocol):
    def scan(self, text: str, start: int, final: bool) -> Scan:
        """Matches in ``text`` that begin at or after ``start`` (before it: released context);
        ``final``: no more text will come."""
        ...


class WordList:
    """Entries matched on skeletons (:mod:`~streamrag.moderation.skeleton`) with one
    Aho–Corasick automaton (``pyahocorasick``); an entry of ASCII letters and digits only
    matches whole words ("ass" is not found in "class")."""

    def __init__(self, entries: Iterable[str]) -> None:
        import ahocorasick

        self.automaton: Any = ahocorasick.Automaton()
        longest = 0
        for entry in entries:
            key = fold_text(entry)
            if key:
                self.automaton.add_word(key, (len(key), bool(_ASCII_WORD.match(key[0]))))
                longest = max(longest, len(key))
        self.longest = longest
        if longest:
            self.automaton.make_automaton()

    def scan(self, text: str, start: int, final: bool) -> Scan:
        if not self.longest:
            return Scan([], len(text))
        skeleton = Skeleton.of(text)
        folded = skeleton.text()
        hold_from = len(text)
        if not final:  # the longest tail that may begin an entry
            for size in range(min(self.longest - 1, len(folded)), 0, -1):
                first = skeleton.origin[len(folded) - size]
                if self.automaton.match(folded[-size:]) and self._may_begin(text, first):
                    hold_from = first
                    break
        matches = []
        for last, (size, ascii_word) in self.automaton.iter(folded):
            begin = skeleton.origin[last - size + 1]
            end = skeleton.origin[last] + 1
            if end <= start:
                continue
            if ascii_word and (
                _is_word_char(text[begin - 1 : begin]) or _is_word_char(text[end : end + 1])
            ):
                continue  # inside a longer word: "ass" in "class"
            if ascii_word and end == len(text) and not final:
                hold_from = min(hold_from, begin)  # "idiot" may become "idiotic"
                continue
            matches.append(Found(begin, end))
        return Scan([m for m in matches if m.begin < hold_from], hold_from)

    @staticmethod
    def _may_begin(text: str, offset: int) -> bool:
        """Whether an entry may begin at ``offset``: not inside an ASCII word (an ASCII entry
        matches whole words only, and no other entry begins with an ASCII letter)."""
        return not (_is_word_char(text[offset]) and _is_word_char(text[offset - 1 : offset]))


def _is_word_char(char: str) -> bool:
    """Whether ``char`` folds to an ASCII letter or digit (full-width ones too)."""
    return bool(char) and bool(_ASCII_WORD.match(fold(char)[:1]))


class Pattern:
    """A regular expression (the ``regex`` module's syntax, case-insensitive), with an
    optional ``valid`` check of each match (a checksum)."""

    def __init__(self, pattern: str, valid: Callable[[str], bool] | None = None) -> None:
        self.pattern = regex.compile(pattern, regex.IGNORECASE | regex.VERSION1)
        self.valid = valid

    def scan(self, text: str, start: int, final: bool) -> Scan:
        found, hold_from = [], len(text)
        for match in self.pattern.finditer(text, start, partial=not final):
            if match.end() <= start or match.start() == match.end():
                continue
            if not final and (
                match.partial
                or match.end() == len(text)
                or self.pattern.fullmatch(text, match.start(), partial=True)  # may grow
            ):
                hold_from = min(hold_from, max(match.start(), start))
                break
            end = self._valid_end(text, match)
            if end is not None:
                found.append(Found(match.start(), end))
        return Scan(found, hold_from)

    def _valid_end(self, text: str, match: Any) -> int | None:
        """Where the match ends once checked: its end, or (it fails the check) that of the
        longest shorter match that ends before a separator and passes ("…5889 021年": the
        card before " 021"); None if none does."""
        if self.valid is None or self.valid(match.group()):
            return match.end()
        start, valid = match.start(), self.valid
        for end in range(match.end() - 1, start, -1):
            boundary = text[end - 1].isalnum() and not text[end].isalnum()
            if boundary and self.pattern.fullmatch(text, start, end) and valid(text[start:end]):
                return end
        return None


def _digits(text: str) -> list[int]:
    return [int(char) for char in text if char.isdigit()]


def luhn_valid(number: str) -> bool:
    """The Luhn check of a bank card number (separators ignored)."""
    digits = _digits(number)
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2:
            digit *= 2
            digit -= 9 if digit > 9 else 0
        total += digit
    return len(digits) >= 13 and total % 10 == 0


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def cn_id_valid(number: str) -> bool:
    """GB 11643's check character (ISO 7064 MOD 11-2) of an 18-character 身份证 number."""
    body, check = number[:17], number[17:].upper()
    if len(number) != 18 or not body.isdigit():
        return False
    digits = _digits(body)
    return _ID_CHECK[sum(w * d for w, d in zip(_ID_WEIGHTS, digits, strict=True)) % 11] == check


PII: dict[str, Callable[[], Pattern]] = {
    # mainland China mobile numbers, also written 138 0013 8000 or 138-0013-8000, +86 first
    "cn_mobile": lambda: Pattern(r"(?<![\d])(?:\+?86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?![\d])"),
    # 18-character resident identity card numbers, check character verified
    "cn_id_card": lambda: Pattern(
        r"(?<![\dA-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
        r"\d{3}[\dXx](?![\dA-Za-z])",
        cn_id_valid,
    ),
    # bank card numbers: 13 to 19 digits, or groups of four with a space or hyphen between,
    # Luhn-checked
    "bank_card": lambda: Pattern(
        r"(?<![\d])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?)(?![\d])", luhn_valid
    ),
    "email": lambda: Pattern(
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+(?![A-Za-z0-9-])"
    ),
}
