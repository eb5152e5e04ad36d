"""Uploads are ingested in worker processes, so that parsing, chunking, tokenizing and
embedding a large file never stall the server's event loop, and uploads waiting for their
turn hold no thread the request path needs.

:class:`IngestWorkers` is a bounded pool of spawned processes (``STREAMRAG_INGEST_WORKERS``,
1 by default). A job runs :meth:`KnowledgeBase.ingest_events` there and sends each progress
event back through one queue that a reader thread hands to the waiting request; the job's
last message is always its end, so no event is lost. A worker that dies (killed, out of
memory) fails the job it was running with a reason, and the pool is started anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import threading
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from streamrag.config import Settings
from streamrag.ingest.loaders import Origin
from streamrag.ingest.pipeline import IngestEvent

log = logging.getLogger("streamrag.server")

_END = "end"
_FAILED = "failed"
_EVENT = "event"
_progress: Any = None  # the worker process's end of the progress queue


class IngestFailed(Exception):
    """The ingest job stopped before its end (the message says why)."""


def _start_worker(progress: Any) -> None:
    global _progress
    _progress = progress


def _run_job(
    job: int,
    settings: Settings,
    kb: str,
    paths: list[Path],
    origins: Mapping[Path, Origin],
) -> None:
    """In a worker process: ingest, sending every event, then the end (or the failure)."""
    from streamrag.kb import KnowledgeBase

    try:
        with KnowledgeBase(kb, settings=settings) as base:
            for event in base.ingest_events(paths, origins=origins):
                _progress.put((job, _EVENT, event))
    except BaseException as exc:  # reported to the request, never lost in the worker
        _progress.put((job, _FAILED, f"{type(exc).__name__}: {exc}"))
    finally:
        _progress.put((job, _END, None))


class IngestWorkers:
    """A bounded pool of ingest processes shared by all uploads of one server."""

    def __init__(self, workers: int = 1) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._workers = workers
        self._progress = self._context.Queue()
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._jobs: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]] = {}
        self._ids = itertools.count()
        self._reader = threading.Thread(target=self._read, name="streamrag-ingest", daemon=True)
        self._reader.start()

    def _executor(self) -> ProcessPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self._workers,
                    mp_context=self._context,
                    initializer=_start_worker,
                    initargs=(self._progress,),
                )
            return self._pool

    def _read(self) -> None:
        """Hand each message of the workers to the request that waits for it."""
        while (message := self._progress.get()) is not None:
            job = message[0]
            target = self._jobs.get(job)
            if target is not None:
                loop, queue = target
                with contextlib.suppress(RuntimeError):  # that loop has closed
                    loop.call_soon_threadsafe(queue.put_nowait, message)

    async def ingest(
        self, settings: Settings, kb: str, paths: list[Path], origins: Mapping[Path, Origin]
    ) -> AsyncIterator[IngestEvent]:
        """The job's events as they happen; it runs to its end even if nobody reads them."""
        job = next(self._ids)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._jobs[job] = (loop, queue)
        try:
            executor = self._executor()
            future = executor.submit(_run_job, job, settings, kb, paths, origins)
        except BrokenProcessPool:
            self._restart(executor)
            future = self._executor().submit(_run_job, job, settings, kb, paths, origins)
        future.add_done_callback(lambda done: self._lost(job, done, executor))
        failure: str | None = None
        try:
            while True:
                _, kind, payload = await queue.get()
                if kind == _EVENT:
                    yield payload
                elif kind == _FAILED:
                    failure = payload
                else:
                    break
        finally:
            self._jobs.pop(job, None)
        if failure is not None:
            raise IngestFailed(failure)

    def _lost(self, job: int, done: Future[None], executor: ProcessPoolExecutor) -> None:
        """A job whose worker died sent no end: send it here."""
        error = done.exception()
        if error is None:
            return
        log.error("ingest worker lost: %s", error)
        target = self._jobs.get(job)
        if target is not None:
            loop, queue = target
            reason = "the ingest worker stopped (killed, or out of memory)"
            for message in ((job, _FAILED, reason), (job, _END, None)):
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(queue.put_nowait, message)
        self._restart(executor)

    def _restart(self, broken: ProcessPoolExecutor) -> None:
        with self._pool_lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Wait for the running jobs, then stop the workers and the reader."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._progress.put(None)
        self._reader.join(5)
