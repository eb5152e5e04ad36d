"""Runs that outlive their HTTP connection: an event buffer to resume from, grace, cancel.

A :class:`LiveRun` drives one engine run in its own task and keeps every event. Any number of
followers read it from a given seq (a client that reconnects with ``Last-Event-ID`` reads
from where it stopped: nothing lost, nothing repeated). When the last follower goes away the
run goes on for ``grace_s`` seconds for a reconnect; then it is cancelled, so that nobody
pays for tokens nobody reads. A cancelled run ends with the ``done`` the engine hands over
(finish_reason "cancelled"), so a late follower still sees how it ended.

The events are also appended to the run event log, at most once every ``flush_s`` seconds
and when the run ends, so that a run outlives this process: after a crash its record holds
the partial answer and a client can still read what was streamed. With a
:class:`~streamrag.server.relay.RunRelay` each event is also sent to the other replicas'
followers (in batches a few ms apart; the run never waits for them).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

from streamrag.answer.events import Done, Event, RunStarted, answer_of, ending
from streamrag.errors import BackendUnavailable
from streamrag.history.base import RunEventLog
from streamrag.server.errors import ApiError
from streamrag.server.metrics import Metrics
from streamrag.server.relay import RunRelay

log = logging.getLogger("streamrag.server")

HEARTBEAT = None  # what follow() yields when nothing happened for heartbeat_s


class LiveRun:
    """One run's events, produced by a task and read by followers."""

    def __init__(
        self,
        run_id: str,
        events: AsyncIterator[Event],
        *,
        eventlog: RunEventLog | None,
        grace_s: float,
        owner: LiveRuns,
        flush_s: float = 1.0,
    ) -> None:
        self.run_id = run_id
        self.session_id: str | None = None
        self.events: list[Event] = []
        self.finished = False
        self.followers = 0
        self.started = time.monotonic()
        self._cancelled_done: Done | None = None
        self._eventlog = eventlog
        self._flush_s = flush_s
        self._flushed = 0  # events already in the event log
        self._last_flush = time.monotonic()
        self._grace_s = grace_s
        self._grace: asyncio.TimerHandle | None = None
        self._grace_check: asyncio.Task[None] | None = None
        self._changed: asyncio.Future[None] | None = None
        self._owner = owner
        self.shown = 0  # events the followers may read (with a relay: those in Redis)
        self._shared = 0  # events already sent to the other replicas
        self._log_lost: BackendUnavailable | None = None  # the event log cannot be written
        self._failure: BaseException | None = None  # what stopped it before its first event
        self.task = asyncio.create_task(self._drive(events), name=f"run-{run_id}")

    async def begun(self) -> None:
        """Wait for the run's first event; raise what stopped it before one (its record
        could not be written: the store is away)."""
        while not self.events and not self.finished:
            await asyncio.shield(self._next_change())
        if not self.events and self._failure is not None:
            raise self._failure

    def _next_change(self) -> asyncio.Future[None]:
        """Done when the next event comes or the run finishes."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    async def _drive(self, events: AsyncIterator[Event]) -> None:
        try:
            async for event in events:
                if isinstance(event, RunStarted):
                    self.session_id = event.session_id
                self.events.append(event)
                self._share()
                if time.monotonic() - self._last_flush >= self._flush_s:
                    await self._flush()
        except asyncio.CancelledError:
            if self._log_lost is None:
                self._append_cancelled_done()
            else:  # stopped because nothing of it could be kept: say so
                message = f"the run could not be kept, so it was stopped: {self._log_lost}"
                self.events += ending(
                    self.events, code="store_unavailable", message=message, finish_reason="error"
                )
        except Exception as exc:  # before the first event: the run could not begin
            self._failure = exc
            if self.events:  # the engine reports its own failures; this is a bug
                log.exception("run %s failed", self.run_id)
        finally:
            self.finished = True
            self._share()
            await asyncio.shield(self._flush())
            self._owner.run_finished(self)

    def _share(self) -> None:
        """Show the followers the new events; with a relay, once it has sent them to the
        other replicas."""
        relay, count = self._owner.relay, len(self.events)
        if relay is None:
            self._show(count)
        elif self._shared < count:
            relay.send(self.events[self._shared :], functools.partial(self._show, count))
            self._shared = count
        else:  # it finished with nothing new
            self._notify()

    def _show(self, count: int) -> None:
        self.shown = max(self.shown, count)
        self._notify()

    async def _flush(self) -> None:
        """Append the events not yet in the event log (and the partial answer)."""
        self._last_flush = time.monotonic()
        fresh = self.events[self._flushed :]
        if self._eventlog is None or not fresh or self._log_lost is not None:
            return
        self._flushed = len(self.events)
        answer = answer_of(self.events)
        try:
            await asyncio.to_thread(self._eventlog.append_events, self.run_id, fresh, answer)
        except BackendUnavailable as exc:  # neither resumable nor recorded: stop it
            log.error("run %s: %s; stopping it", self.run_id, exc)
            if self._log_lost is None and not self.finished:
                self._log_lost = exc
                self.task.cancel()
        except Exception:  # a bug: the stream goes on, the log misses these events
            log.exception("could not log the events of run %s", self.run_id)

    def cancelled_with(self, done: Done) -> None:
        """The engine's ``done`` of this run, cancelled (it cannot stream it any more)."""
        self._cancelled_done = done

    def _append_cancelled_done(self) -> None:
        done = self._cancelled_done
        if done is None:  # cancelled before the engine began
            done = Done(
                run_id=self.run_id,
                seq=len(self.events),
                answer=answer_of(self.events),
                citations=[],
                finish_reason="cancelled",
                timings={},
                usage={},
            )
        self.events.append(done)

    def _notify(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    async def follow(
        self, after: int = -1, heartbeat_s: float = 15.0
    ) -> AsyncIterator[Event | None]:
        """The events with seq > ``after``, then live ones until ``done``; ``HEARTBEAT``
        (None) after every ``heartbeat_s`` without one."""
        self.followers += 1
        self._owner.metrics.active_streams.inc()
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        position = after + 1  # seq is the index in the run's events
        try:
            while True:
                while position < self.shown:
                    yield self.events[position]
                    position += 1
                if self.finished and position >= len(self.events):
                    return
                done, _ = await asyncio.wait((self._next_change(),), timeout=heartbeat_s)
                if not done:
                    yield HEARTBEAT
        finally:
            self.followers -= 1
            self._owner.metrics.active_streams.dec()
            if not self.finished:
                self._owner.metrics.disconnects.inc()
                if not self.followers:
                    self._left_alone()

    def _left_alone(self) -> None:
        if self._grace_s <= 0:
            self.cancel()
        else:
            loop = asyncio.get_running_loop()
            self._grace = loop.call_later(self._grace_s, self._grace_over)

    def _grace_over(self) -> None:
        self._grace = None
        if self.followers:
            return
        if self._owner.relay is None:
            self._abandon()
        else:  # a client may read it on another replica
            self._grace_check = asyncio.create_task(self._abandon_unless_followed_elsewhere())

    async def _abandon_unless_followed_elsewhere(self) -> None:
        assert self._owner.relay is not None
        if not await self._owner.relay.followed(self.run_id):
            self._abandon()
        elif not self.followers and not self.finished:  # look again after another grace
            self._grace = asyncio.get_running_loop().call_later(self._grace_s, self._grace_over)

    def _abandon(self) -> None:
        if not self.followers:
            log.info("run %s: nobody resumed within %.1f s, cancelling", self.run_id, self._grace_s)
            self.cancel()

    def cancel(self) -> bool:
        """Stop the run now; False when it had already finished."""
        if self.finished:
            return False
        self.task.cancel()
        return True


class LiveLog(Protocol):
    """Where the events of runs still answering are read while they stream, by ``run_id``:
    :class:`LiveRuns` holds this process's own runs, :class:`~streamrag.server.replicas.
    Replicas` those of every replica (through Redis). tests/test_live_log.py holds both to
    the same contract."""

    async def last(self, run_id: str) -> tuple[int, bool] | None:
        """The seq of the run's last event and whether it is its ``done``; None for a run
        this log does not hold."""
        ...

    def follow(self, run_id: str, after: int) -> AsyncIterator[Event | None]:
        """The events with seq > ``after``, then each as it comes until ``done`` (a tail
        that blocks); None for every heartbeat interval without one."""
        ...

    async def cancel(self, run_id: str) -> bool:
        """Stop the run and wait until it has ended: True if this stopped it, False when it
        had ended already. A run the log does not hold: 404."""
        ...


class LiveRuns:
    """The runs of this process (a :class:`LiveLog`), kept ``keep_s`` seconds after they
    finish for late resumes."""

    def __init__(
        self,
        *,
        grace_s: float,
        metrics: Metrics,
        heartbeat_s: float = 15.0,
        keep_s: float = 300.0,
        relay: RunRelay | None = None,
    ) -> None:
        self.grace_s = grace_s
        self.heartbeat_s = heartbeat_s
        self.keep_s = keep_s
        self.metrics = metrics
        self.relay = relay
        self._runs: dict[str, LiveRun] = {}

    def start(
        self,
        run_id: str,
        events: AsyncIterator[Event],
        eventlog: RunEventLog | None = None,
    ) -> LiveRun:
        run = LiveRun(run_id, events, eventlog=eventlog, grace_s=self.grace_s, owner=self)
        self._runs[run_id] = run
        return run

    def get(self, run_id: str) -> LiveRun | None:
        return self._runs.get(run_id)

    async def last(self, run_id: str) -> tuple[int, bool] | None:
        run = self._runs.get(run_id)
        if run is None:
            return None
        last = run.shown - 1
        return last, last >= 0 and isinstance(run.events[last], Done)

    def follow(self, run_id: str, after: int) -> AsyncIterator[Event | None]:
        return self._runs[run_id].follow(after, self.heartbeat_s)

    async def cancel(self, run_id: str) -> bool:
        run = self._runs.get(run_id)
        if run is None:
            raise ApiError(404, "run_not_live", f"run {run_id!r} is not running")
        cancelled = run.cancel()
        await asyncio.shield(run.task)
        return cancelled

    async def cancel_session(self, session_id: str) -> int:
        """Cancel the session's unfinished runs and wait until they have ended."""
        running = [
            run for run in self._runs.values() if run.session_id == session_id and run.cancel()
        ]
        await asyncio.gather(*(asyncio.shield(run.task) for run in running))
        return len(running)

    @property
    def active(self) -> int:
        return sum(not run.finished for run in self._runs.values())

    def run_finished(self, run: LiveRun) -> None:
        if not run.events:  # it never began: nothing to resume
            self._runs.pop(run.run_id, None)
            return
        self.metrics.observe_run(run.events)
        asyncio.get_running_loop().call_later(self.keep_s, self._runs.pop, run.run_id, None)

    async def close(self) -> None:
        """Cancel every unfinished run and wait for them to record themselves."""
        running = [run.task for run in self._runs.values() if not run.finished]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
