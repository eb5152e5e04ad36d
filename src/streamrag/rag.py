"""The Python API: ``RAG`` answers questions over a knowledge base, streamed or whole.

>>> rag = streamrag.RAG()                  # configuration from env / .env / streamrag.toml
>>> for text in rag.stream("退货要多久？"):
...     print(text, end="", flush=True)
>>> answer = rag.ask("How long is the warranty?", session_id="s1")
>>> answer.text, answer.sources, answer.citations
>>> async with streamrag.RAG() as rag:      # on your own event loop
...     async for event in rag.astream_events("退货要多久？"):
...         print(event.to_json())

Every method is an adapter over :meth:`RAG.astream_events`, the engine's event stream. The
synchronous ones run it on a private event-loop thread; leaving a sync iterator early (or
Ctrl-C while waiting on it) cancels the run, which is then recorded as cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from streamrag.answer.citations import cite
from streamrag.answer.engine import AnswerEngine, AnswerSettings
from streamrag.answer.events import CitedSource, Done, Error, Event, RunStarted, Source, Sources
from streamrag.backends import Backend, History
from streamrag.config import Settings, load_settings
from streamrag.kb import KnowledgeBase
from streamrag.llm import LLM, make_llm
from streamrag.moderation import moderation

T = TypeVar("T")
_END = object()


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer: its text, the numbered sources and where the text cites them."""

    text: str
    sources: list[Source]
    citations: list[CitedSource]
    finish_reason: str
    run_id: str
    session_id: str
    standalone_question: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    error: Error | None = None

    def __str__(self) -> str:
        return self.text

    @classmethod
    def from_events(cls, events: list[Event]) -> Answer:
        started = next(e for e in events if isinstance(e, RunStarted))
        done = next(e for e in events if isinstance(e, Done))
        sources = next((e.sources for e in events if isinstance(e, Sources)), [])
        return cls(
            text=done.answer,
            sources=sources,
            citations=done.citations,
            finish_reason=done.finish_reason,
            run_id=done.run_id,
            session_id=started.session_id,
            standalone_question=done.standalone_question,
            timings=done.timings,
            usage=done.usage,
            error=next((e for e in events if isinstance(e, Error)), None),
        )


class RAG:
    """Answers over one knowledge base (default: the configured one) with the configured LLM.

    ``overrides`` are settings fields (``kb="docs"``, ``llm_base_url=...``); ``llm`` replaces
    the configured model; ``create=False`` refuses a knowledge base that does not exist. The
    knowledge base and the runs' records are kept by ``backend`` (default: the configured
    one, opened here and closed by :meth:`close`); a ``session_id`` makes follow-up
    questions use the conversation so far.
    """

    def __init__(
        self,
        kb: str | KnowledgeBase | None = None,
        *,
        settings: Settings | None = None,
        llm: LLM | None = None,
        backend: Backend | None = None,
        create: bool = True,
        **overrides: Any,
    ) -> None:
        if isinstance(kb, KnowledgeBase):
            self.settings = settings or kb.settings
            self.kb = kb
        else:
            self.settings = settings or load_settings(**overrides)
            self.kb = KnowledgeBase(kb, settings=self.settings, backend=backend, create=create)
        self.rules = self.kb.moderation_rules()
        self.history: History = self.kb.backend.history
        self._llm = llm
        self._engine: AnswerEngine | None = None
        self._engine_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self._pending: set[tuple[concurrent.futures.Future[None], threading.Event]] = set()

    @property
    def engine(self) -> AnswerEngine:
        """The answer engine (the first use loads the model)."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = AnswerEngine(
                    self.kb,
                    self._llm or make_llm(self.settings),
                    AnswerSettings.from_settings(self.settings),
                    memory=self.history,
                    runlog=self.history,
                    transformers=(moderation(self.rules), cite) if self.rules.rules else (cite,),
                )
            return self._engine

    # -- async ---------------------------------------------------------------------------

    async def astream_events(self, question: str, **options: Any) -> AsyncIterator[Event]:
        """The typed events of one answer. ``options``: session_id, run_id, history, top_k,
        where (see :meth:`AnswerEngine.run`)."""
        engine = self._engine or await asyncio.to_thread(lambda: self.engine)
        async for event in engine.run(question, **options):
            yield event

    async def astream(self, question: str, **options: Any) -> AsyncIterator[str]:
        """The answer's text as it streams."""
        async for event in self.astream_events(question, **options):
            if event.type == "token":
                yield event.text  # type: ignore[attr-defined]

    async def aask(self, question: str, **options: Any) -> Answer:
        """The whole answer."""
        return Answer.from_events([e async for e in self.astream_events(question, **options)])

    # -- sync ----------------------------------------------------------------------------

    def stream_events(self, question: str, **options: Any) -> Iterator[Event]:
        """:meth:`astream_events` as a plain iterator."""
        return self._iterate(lambda: self.astream_events(question, **options))

    def stream(self, question: str, **options: Any) -> Iterator[str]:
        """The answer's text as it streams, as a plain iterator."""
        return self._iterate(lambda: self.astream(question, **options))

    def ask(self, question: str, **options: Any) -> Answer:
        """The whole answer, waiting for it."""
        return Answer.from_events(list(self.stream_events(question, **options)))

    def _iterate(self, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """Drive an async iterator on the private loop, handing items over one by one."""
        items: queue.Queue[Any] = queue.Queue()
        finished = threading.Event()

        async def pump() -> None:
            try:
                async for item in make():
                    items.put(item)
                items.put(_END)
            except BaseException as exc:
                items.put(exc)
                raise
            finally:
                finished.set()

        future = asyncio.run_coroutine_threadsafe(pump(), self._event_loop())
        pending = (future, finished)
        self._pending.add(pending)
        try:
            while (item := items.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop(pending)

    def _stop(self, pending: tuple[concurrent.futures.Future[None], threading.Event]) -> None:
        """Cancel an unfinished run and wait until it has recorded itself as cancelled."""
        future, finished = pending
        if not finished.is_set():
            future.cancel()
            finished.wait()
        self._pending.discard(pending)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="streamrag-rag-loop", daemon=True
                ).start()
            return self._loop

    def close(self) -> None:
        """Stop unfinished runs (recorded as cancelled), then the private loop."""
        for pending in list(self._pending):
            self._stop(pending)
        if self._loop is not None:
            if self._engine is not None and self._llm is None:  # the model was made here
                closing = self._engine.llm.aclose()
                asyncio.run_coroutine_threadsafe(closing, self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self.kb.close()

    async def aclose(self) -> None:
        """:meth:`close` for a program that used the async API on its own event loop: the
        model's connections made on that loop are released there."""
        if self._engine is not None and self._llm is None:
            await self._engine.llm.aclose()
        await asyncio.to_thread(self.close)

    def __enter__(self) -> RAG:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    async def __aenter__(self) -> RAG:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
