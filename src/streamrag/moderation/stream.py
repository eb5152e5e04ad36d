"""Moderation of a streamed answer and of a question: a text filter and the engine's stage.

:class:`TextFilter` takes the answer as it streams and gives back what may be shown: every
character is released as soon as no rule could still match it across the next delta (the
detectors say from where to hold back), with masked matches replaced by ＊ of the same length
(so citation offsets stay exact) and nothing released after a ``block``. What was released
is never revised.

:func:`moderation` makes the engine's transformer: it checks the question as the run starts
(``mask`` rewrites it before anything reads it, ``block`` ends the run, ``refuse`` answers
with the rules' refusal; the model is never asked) and filters the answer's tokens, each
rule that fires announced by a ``moderation`` event naming its class and action. A ``block``
closes the model's stream at once and the run ends ``moderated``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from streamrag.answer.events import Error, Event, Moderation, RunStarted, Token, Usage
from streamrag.answer.run import UNNUMBERED, EventTransformer, RunState
from streamrag.errors import LoadError
from streamrag.ingest.loaders import LoadedDocument
from streamrag.moderation.rules import Rule, Rules

MASK = "＊"
CONTEXT = 8  # released characters a detector sees before the held text (look-behinds)


class TextFilter:
    """Feed the deltas of a text in order; get back what may be shown now. With ``stop``
    False every match is masked, whatever its rule's action (a text to record, not show)."""

    def __init__(self, rules: Sequence[Rule], *, stop: bool = True) -> None:
        self.rules = rules
        self.stop = stop
        self.text = ""  # all fed so far, masks applied
        self.released = 0
        self.fired: list[Rule] = []
        self.blocked: Rule | None = None  # the block or refuse rule that stopped it
        self.held_chars_max = 0
        self.hold_ms_max = 0.0
        self._arrivals: list[tuple[int, float]] = []  # (end offset, arrival) of held deltas

    def feed(self, delta: str) -> str:
        """The text ``delta`` lets out ("" if everything is held, or the text is blocked)."""
        if self.blocked is not None:
            return ""
        self.text += delta
        self._arrivals.append((len(self.text), time.perf_counter()))
        return self._release(final=False)

    def finish(self) -> str:
        """The rest, once the text is complete."""
        if self.blocked is not None:
            return ""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        origin = max(0, self.released - CONTEXT)
        window = self.text[origin:]
        start = self.released - origin
        hold = len(window)
        masks: list[tuple[int, int]] = []
        for rule in self.rules:
            for detector in rule.detectors:
                scan = detector.scan(window, start, final)
                hold = min(hold, scan.hold_from)
                for found in scan.found:
                    self.fired.append(rule)
                    if rule.action != "mask" and self.stop:
                        self.blocked = rule
                        return ""
                    masks.append((max(found.begin, start), found.end))
        for begin, end in masks:
            window = window[:begin] + MASK * (end - begin) + window[end:]
        self.text = self.text[:origin] + window
        upto = max(origin + hold, self.released)
        out = self.text[self.released : upto]
        self.released = upto
        self._note_hold(upto)
        return out

    def _note_hold(self, upto: int) -> None:
        self.held_chars_max = max(self.held_chars_max, len(self.text) - upto)
        now = time.perf_counter()
        while self._arrivals and self._arrivals[0][0] <= upto:
            _, arrived = self._arrivals.pop(0)
            self.hold_ms_max = max(self.hold_ms_max, (now - arrived) * 1000)


def check_text(rules: Sequence[Rule], text: str) -> tuple[str, list[Rule]]:
    """A whole text with every match masked (whatever its rule's action), and the rules that
    fired, in order: for a question, or a document's text."""
    checker = TextFilter(rules, stop=False)
    masked = checker.feed(text) + checker.finish()
    return masked, checker.fired


def moderation(rules: Rules) -> EventTransformer:
    """The engine's moderation stage for ``rules`` (put it first: every later stage and
    every surface sees only what it lets through)."""
    question_rules, answer_rules = rules.on("input"), rules.on("output")

    async def moderate(events: AsyncIterator[Event], run: RunState) -> AsyncIterator[Event]:
        answer = TextFilter(answer_rules)

        def announce(target: str, rule: Rule) -> Moderation:
            return Moderation(
                run_id=run.run_id,
                seq=UNNUMBERED,
                target=target,  # type: ignore[arg-type]
                rule_class=rule.rule_class,
                action=rule.action,
            )

        def token(text: str) -> Token:
            return Token(run_id=run.run_id, seq=UNNUMBERED, text=text)

        try:
            async for event in events:
                if isinstance(event, RunStarted) and question_rules:
                    run.question, fired = check_text(question_rules, run.question)
                    yield replace(event, question=run.question)
                    for rule in fired:
                        yield announce("input", rule)
                    stop = next((r for r in fired if r.action != "mask"), None)
                    if stop is not None:
                        run.finish = "moderated"
                        if stop.action == "refuse":
                            yield token(rules.refusal)
                        return
                    continue
                if isinstance(event, Token):
                    fired_before = len(answer.fired)
                    released = answer.feed(event.text)
                elif isinstance(event, Usage | Error):
                    fired_before = len(answer.fired)
                    released = answer.finish()
                else:
                    yield event
                    continue
                if released:
                    yield token(released)
                for rule in answer.fired[fired_before:]:
                    yield announce("output", rule)
                if answer.blocked is not None:
                    run.finish = "moderated"
                    return
                if not isinstance(event, Token):
                    yield event
        finally:
            if answer_rules:
                run.timings["holdback_ms_max"] = round(answer.hold_ms_max, 2)
                run.timings["holdback_chars_max"] = answer.held_chars_max
            await events.aclose()  # type: ignore[attr-defined]

    return moderate


class DocumentCheck:
    """The ``documents`` rules, applied to each document at ingest: its matches masked
    whatever their rules' actions, and a document that a ``block`` rule matches refused."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules.on("documents")
        self.fingerprint = rules.digest if self.rules else ""

    def __call__(self, doc: LoadedDocument) -> tuple[LoadedDocument, str | None]:
        """The document as it may be stored, and what was masked (None: nothing)."""
        title, fired = check_text(self.rules, doc.title)
        blocks = []
        for block in doc.blocks:
            text, more = check_text(self.rules, block.text)
            blocks.append(replace(block, text=text))
            fired += more
        if not fired:
            return doc, None
        stop = next((rule for rule in fired if rule.action != "mask"), None)
        if stop is not None:
            raise LoadError(f"refused by moderation rule {stop.rule_class!r} ({stop.action})")
        counts = Counter(rule.rule_class for rule in fired)
        note = "masked by moderation: " + ", ".join(f"{c} ×{n}" for c, n in counts.items())
        return replace(doc, title=title, blocks=blocks), note
