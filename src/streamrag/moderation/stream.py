"""Moderation of a streamed answer and of a question: a text filter and the engine's stage.

:class:`TextFilter` takes the answer as it streams and gives back what may be shown: every
character is released as soon as no rule could still match it across the next delta (the
detectors say from where to hold back), with masked matches replaced by ＊ of the same length
(so citation offsets stay exact) and nothing released after a ``block``. What was released
is never revised.

:func:`moderation` makes the engine's transformer: it checks the question as the run starts
(``mask`` rewrites it before anything reads it, ``block`` ends the run, ``refuse`` answers
with the rules' refusal; the model is never asked) and filters the answer's tokens — then,
with classifier rules, holds what passed until a sentence can be put to them — each rule that
fires announced by a ``moderation`` event naming its class and action. A ``block`` closes
the model's stream at once and the run ends ``moderated``. :class:`ModerationCheck` applies
the ``documents`` rules at ingest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import httpx

from streamrag.answer.events import Error, Event, Moderation, RunStarted, Token, Usage
from streamrag.answer.run import UNNUMBERED, EventTransformer, RunState
from streamrag.errors import LoadError
from streamrag.ingest.loaders import LoadedDocument
from streamrag.moderation.classifier import SentenceGate
from streamrag.moderation.rules import Rule, Rules

log = logging.getLogger("streamrag.moderation")

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
    question_asked = [rule for rule in question_rules if rule.classifier]
    answer_asked = [rule for rule in answer_rules if rule.classifier]

    async def moderate(events: AsyncIterator[Event], run: RunState) -> AsyncIterator[Event]:
        answer = TextFilter(answer_rules)
        gate = _gate(answer_asked)
        upstream = _Upstream(events)
        client = httpx.AsyncClient() if question_asked or answer_asked else None

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

        async def question(event: RunStarted) -> AsyncIterator[Event]:
            run.question, fired = check_text(question_rules, run.question)
            if not fired and client is not None:
                fired = await _flagged(run, client, question_asked, run.question)
            yield replace(event, question=run.question)
            for rule in fired:
                yield announce("input", rule)
            stop = next((rule for rule in fired if rule.action != "mask"), None)
            if stop is not None:
                run.finish = "moderated"
                if stop.action == "refuse":
                    yield token(rules.refusal)

        async def release(text: str, *, everything: bool = False) -> AsyncIterator[Event]:
            """Send text the filter let out: through the classifiers' gate, if there is one
            (a flagged sentence is masked whole, or ends the answer)."""
            if gate is None or client is None:
                if text:
                    yield token(text)
                return
            gate.add(text)
            while held := gate.take(everything=everything):
                fired = await _flagged(run, client, answer_asked, held)
                for rule in fired:
                    yield announce("output", rule)
                if any(rule.action != "mask" for rule in fired):
                    run.finish = "moderated"
                    return
                yield token(MASK * len(held) if fired else held)

        try:
            while True:
                event = await upstream.next(gate.seconds_left() if gate else None)
                if event is None:  # held text has waited long enough: ask about it now
                    async for out in release("", everything=True):
                        yield out
                elif event is _END:
                    return
                elif isinstance(event, RunStarted) and question_rules:
                    async for out in question(event):
                        yield out
                elif isinstance(event, Token | Usage | Error):
                    final = not isinstance(event, Token)
                    fired_before = len(answer.fired)
                    released = answer.finish() if final else answer.feed(event.text)
                    async for out in release(released, everything=final):
                        yield out
                    for rule in answer.fired[fired_before:]:
                        yield announce("output", rule)
                    if answer.blocked is not None:
                        run.finish = "moderated"
                    if final and run.finish != "moderated":
                        yield event
                else:
                    yield event
                if run.finish == "moderated":
                    return
        finally:
            if answer_rules:
                run.timings["holdback_ms_max"] = round(answer.hold_ms_max, 2)
                run.timings["holdback_chars_max"] = answer.held_chars_max
            if client is not None:
                await client.aclose()
            await upstream.aclose()

    return moderate


def _gate(rules: Sequence[Rule]) -> SentenceGate | None:
    """The hold in front of ``rules``' classifiers: the shortest of their caps."""
    classifiers = [rule.classifier for rule in rules if rule.classifier is not None]
    if not classifiers:
        return None
    return SentenceGate(
        min(c.max_hold_chars for c in classifiers), min(c.max_hold_ms for c in classifiers)
    )


async def _flagged(
    run: RunState, client: httpx.AsyncClient, rules: Sequence[Rule], text: str
) -> list[Rule]:
    """The rules whose classifier flags ``text`` (or cannot say, and fails closed), asked
    together; the run's timings note how long the slowest took (``classifier_ms_max``) and
    how many could not answer (``classifier_errors``)."""
    asked = [(rule, rule.classifier) for rule in rules if rule.classifier is not None]
    started = time.perf_counter()
    answers = await asyncio.gather(
        *(classifier.flagged(client, text) for _, classifier in asked), return_exceptions=True
    )
    timings = run.timings
    elapsed = (time.perf_counter() - started) * 1000
    timings["classifier_ms_max"] = round(max(timings.get("classifier_ms_max", 0), elapsed), 2)
    fired = []
    for (rule, classifier), flagged in zip(asked, answers, strict=True):
        if isinstance(flagged, BaseException):
            if not isinstance(flagged, httpx.HTTPError | ValueError):
                raise flagged
            timings["classifier_errors"] = timings.get("classifier_errors", 0) + 1
            log.warning("moderation classifier of rule %r failed: %s", rule.rule_class, flagged)
            flagged = classifier.on_error == "fail_closed"
        if flagged:
            fired.append(rule)
    return fired


_END = object()  # the events before this stage are over


class _Upstream:
    """The events before this stage, read with an optional time limit (a read that times
    out goes on in a task, picked up by the next read)."""

    def __init__(self, events: AsyncIterator[Event]) -> None:
        self.events = events
        self.task: asyncio.Future[Any] | None = None

    async def next(self, timeout: float | None) -> Any:
        """The next event, ``_END``, or None when ``timeout`` seconds passed first."""
        if timeout is None and self.task is None:
            return await anext(self.events, _END)
        if self.task is None:
            self.task = asyncio.ensure_future(anext(self.events, _END))
        done, _ = await asyncio.wait({self.task}, timeout=timeout)
        if not done:
            return None
        task, self.task = self.task, None
        return task.result()

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.events.aclose()  # type: ignore[attr-defined]


class ModerationCheck:
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
