"""Whether a source supports a sentence of the answer, decided as the answer streams.

A sentence's support by a source is the share of its claim's terms found in the source: its
terms — English words (stemmed, function words left out) and Chinese character bigrams,
markers and punctuation left out — less those of the question (what the sentence adds; all of
them if it adds nothing): "Yes, libffi is thread-safe" adds only "yes" to "Is libffi
thread-safe?", and a manual that never says so does not support it. A cited source that holds
at least ``SUPPORTED`` of them supports the sentence — unless the sentence asserts something
new to it (:func:`asserts_new`: a number it lacks, or a run of words it does not hold: the
swapped fact in a sentence otherwise copied from the source); a sentence without a marker is
given an inferred citation when one source holds at least ``INFERRED`` of them and clearly
more (``INFER_MARGIN``) than any other, and nothing new. The constants were fixed before
measuring (bench/citation_support.py measures them); the new-assertion rule came after its
first run showed that every swapped fact passed.

:class:`SentenceSplitter` cuts the streamed answer into sentences; a marker written after the
sentence's closing punctuation ("…退货。[1]") still belongs to that sentence.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from streamrag.answer.events import Source
from streamrag.retrieve.tokenize import CJK_CHAR, CJK_RUN, STOPWORDS, stem

SUPPORTED = 0.5
INFERRED = 0.75
INFER_MARGIN = 0.2
MIN_INFER_TERMS = 4  # a shorter sentence ("好的。") is not worth a citation

_WORD = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*")
_TERM = re.compile(f"{CJK_RUN.pattern}|{_WORD.pattern}")
_MARKER = re.compile(r"[\[【]\s*\d{1,3}(?:\s*[,，、]\s*\d{1,3})*\s*[\]】]")
_ENDS = frozenset("。！？；!?;\n")
_TRAILING = frozenset(" \t\r\n[]【】0123456789,，、\"'”’)）")  # may follow an end


def support_terms(text: str) -> frozenset[str]:
    """The terms of ``text`` that support is judged on."""
    return frozenset(_ordered_terms(text))


def _ordered_terms(text: str) -> list[str]:
    normalized = unicodedata.normalize("NFKC", _MARKER.sub(" ", text)).lower()
    terms = []
    for match in _TERM.finditer(normalized):
        piece = match.group()
        if CJK_CHAR.match(piece):
            terms += [piece[i : i + 2] for i in range(len(piece) - 1)]
        elif piece not in STOPWORDS:
            terms.append(stem(piece))
    return terms


def asserts_new(sentence: str, source: frozenset[str], asked: frozenset[str]) -> bool:
    """Whether ``sentence`` states something the source does not hold: a number it lacks, or
    a run of words (two) or of Chinese text (four characters) found neither there nor in the
    question — the swapped fact of a sentence otherwise copied from the source."""
    run = 0
    for term in _ordered_terms(sentence):
        missing = term not in source and term not in asked
        if missing and any(char.isdigit() for char in term):
            return True
        run = run + 1 if missing else 0
        if run >= (3 if CJK_CHAR.match(term) else 2):
            return True
    return False


def support(sentence: frozenset[str], source: frozenset[str]) -> float:
    """The share of a sentence's terms found in a source (0 for a sentence without any)."""
    return len(sentence & source) / len(sentence) if sentence else 0.0


@dataclass(frozen=True, slots=True)
class Sentence:
    """A finished sentence: ``start``, the offset of its closing punctuation (``end``) and
    where the text after it (its markers, white space) stops (``close``)."""

    start: int
    end: int
    close: int


class SentenceSplitter:
    """Feed answer deltas in order; get back the sentences each delta finished."""

    def __init__(self) -> None:
        self.text = ""
        self._start = 0
        self._end: int | None = None  # the closing punctuation of the current sentence
        self._cursor = 0

    def feed(self, delta: str) -> list[Sentence]:
        self.text += delta
        done: list[Sentence] = []
        text = self.text
        while self._cursor < len(text):
            i, char = self._cursor, text[self._cursor]
            if self._end is None:
                if char == "." and i + 1 == len(text):
                    break  # an end only if white space follows: wait for it
                if char in _ENDS or (char == "." and text[i + 1].isspace()):
                    self._end = i
            elif char not in _TRAILING:
                done.append(Sentence(self._start, self._end, i))
                self._start, self._end = i, None
                continue  # this character begins the next sentence
            self._cursor += 1
        return done

    def finish(self) -> Sentence | None:
        """The last sentence, once the answer is over (None if there is no text left)."""
        if not self.text[self._start :].strip():
            return None
        end = self._end if self._end is not None else len(self.text.rstrip())
        return Sentence(self._start, end, len(self.text))


class SupportJudge:
    """Support of the sentences answering ``question`` by its numbered sources."""

    def __init__(self, sources: Sequence[Source], question: str = "") -> None:
        self.terms = {
            source.number: support_terms(f"{source.title}\n{source.text}") for source in sources
        }
        self.asked = support_terms(question)

    def _claim(self, terms: frozenset[str]) -> frozenset[str]:
        """What a sentence's terms add to the question (all of them if nothing)."""
        return terms - self.asked or terms

    def score(self, sentence: str, number: int) -> float:
        claim = self._claim(support_terms(sentence))
        return round(support(claim, self.terms.get(number, frozenset())), 3)

    def judge(self, sentence: str, number: int) -> tuple[float, bool]:
        """The sentence's score against source ``number``, and whether the source supports
        it: enough of its terms there, and nothing new asserted (:func:`asserts_new`)."""
        score = self.score(sentence, number)
        source = self.terms.get(number, frozenset())
        return score, score >= SUPPORTED and not asserts_new(sentence, source, self.asked)

    def infer(self, sentence: str) -> tuple[int, float] | None:
        """The source that clearly supports a sentence without a marker, and its score."""
        terms = support_terms(sentence)
        if len(terms) < MIN_INFER_TERMS or not self.terms:
            return None
        claim = self._claim(terms)
        scores = sorted(
            ((support(claim, source), number) for number, source in self.terms.items()),
            reverse=True,
        )
        best, number = scores[0]
        runner_up = scores[1][0] if len(scores) > 1 else 0.0
        if best < INFERRED or best - runner_up < INFER_MARGIN:
            return None
        if asserts_new(sentence, self.terms[number], self.asked):
            return None
        return number, round(best, 3)
