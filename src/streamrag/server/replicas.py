"""This replica among the others that share its Redis (``STREAMRAG_REDIS_URL``): resuming and
cancelling their runs, taking their cancel requests, beating, and ending the runs of a
replica that died.

The transport is :class:`~streamrag.server.relay.RunRelay`; the runs of this replica are
:class:`~streamrag.server.live.LiveRuns`; the records are the history store's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from redis import RedisError

from streamrag.answer.events import Done, Event, answer_of
from streamrag.config import Settings
from streamrag.history.base import RunHistory
from streamrag.server.errors import ApiError
from streamrag.server.live import LiveRuns
from streamrag.server.relay import RelayUnavailable, RunRelay

log = logging.getLogger("streamrag.server")


class Replicas:
    """What this replica does with the others' runs, and they with its."""

    def __init__(
        self, relay: RunRelay, runs: LiveRuns, history: RunHistory, settings: Settings
    ) -> None:
        self.relay = relay
        self.runs = runs
        self.history = history
        self.settings = settings
        self._tasks: list[asyncio.Task[None]] = []
        self._leaving = False

    async def last(self, run_id: str) -> tuple[int, bool] | None:
        """The last seq another replica published of a run, and whether it was ``done``;
        None when no replica publishes it, or Redis is unreachable (then the run event log
        answers, as without replicas)."""
        try:
            return await self.relay.last(run_id)
        except RelayUnavailable:
            log.warning("run %s: Redis unreachable, resuming from the run event log", run_id)
            return None

    def follow(self, run_id: str, after: int) -> AsyncIterator[Event | None]:
        """A run another replica publishes: the events after seq ``after``, then live ones,
        heartbeats (None) in between."""
        heartbeat = self.settings.heartbeat_s
        mark = max(self.settings.resume_grace_s, heartbeat) * 2
        return self.relay.follow(run_id, after, heartbeat, mark)

    async def cancel(self, run_id: str) -> bool:
        """Stop a run another replica runs and wait until it has ended; False when it had
        already ended; 404 when no replica runs it."""
        shared = await self.relay.last(run_id)
        if shared is None:
            raise ApiError(404, "run_not_live", f"run {run_id!r} is not running")
        if shared[1]:  # its done was published
            return False
        clock = asyncio.get_running_loop().time
        wait_s = self.settings.heartbeat_s * 2
        deadline = clock() + wait_s
        await self.relay.cancel(run_id=run_id)
        asked = clock()
        # from its last event on; the request again every second until the run ends (a
        # replica whose listening was cut, Redis having restarted, hears a later one)
        async for event in self.relay.follow(run_id, shared[0], 1.0, 1.0):
            if isinstance(event, Done):
                return event.finish_reason == "cancelled"
            if clock() > deadline:
                raise ApiError(
                    503,
                    "cancel_unconfirmed",
                    f"the replica running run {run_id!r} did not confirm the cancel within"
                    f" {wait_s:g} s; try again",
                )
            if clock() - asked >= 1.0:
                await self.relay.cancel(run_id=run_id)
                asked = clock()
        return False

    async def cancel_session(self, session_id: str) -> None:
        """Have the other replicas cancel a session's runs; wait until the records say they
        have ended (so that none records itself into a deleted session)."""
        await self.relay.cancel(session_id=session_id)
        async with asyncio.timeout(self.settings.heartbeat_s * 2):
            while True:
                runs = await asyncio.to_thread(self.history.runs, session_id)
                if all(run.finished for run in runs):
                    return
                await asyncio.sleep(0.05)

    def ingest_lock(self, kb: str) -> AbstractAsyncContextManager[None]:
        """The replicas' turn to change knowledge base ``kb``."""
        return self.relay.lock(f"ingest:{kb}")

    async def join(self) -> None:
        """Beat (before the first run begins here, so no replica takes it for lost), then
        take the others' cancel requests and watch their beats."""
        try:
            await self.relay.beat(self.history.owner, self.settings.replica_timeout_s)
        except Exception as exc:
            log.warning("the replicas' Redis cannot be reached (%s); retrying", exc)
        self._tasks = [
            asyncio.create_task(self._listen(), name="replicas-cancel"),
            asyncio.create_task(self._watch(), name="replicas-watch"),
        ]

    async def leave(self) -> None:
        """Stop listening and beating. The loops also stop by themselves, should a Redis
        client swallow the cancellation of a call in flight."""
        self._leaving = True
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=5)
        await self.relay.aclose()

    async def _listen(self) -> None:
        while not self._leaving:
            try:
                await self.relay.listen(self._cancel_here, until=lambda: self._leaving)
            except RedisError as exc:  # Redis restarted or unreachable: listen again
                log.warning("cancel requests from other replicas: %s; retrying in 1 s", exc)
                await asyncio.sleep(1)

    async def _cancel_here(self, run_id: str | None, session_id: str | None) -> None:
        run = self.runs.get(run_id) if run_id else None
        if run is not None:
            run.cancel()
        if session_id:
            await self.runs.cancel_session(session_id)

    async def _watch(self) -> None:
        timeout = self.settings.replica_timeout_s
        while not self._leaving:
            try:
                await self.relay.beat(self.history.owner, timeout)
                await self._end_lost_runs()
            except Exception as exc:  # Redis away for a while: try again at the next beat
                log.warning("could not watch the other replicas: %s", exc)
            await asyncio.sleep(timeout / 4)

    async def _end_lost_runs(self) -> None:
        """End as interrupted (``worker_lost``) the runs of replicas that stopped beating:
        their followers get an error and ``done``, their records the partial answer."""
        running = await asyncio.to_thread(self.history.running)
        others = {owner for owner in running.values() if owner != self.history.owner}
        alive = await self.relay.alive(others)
        for run_id, owner in running.items():
            if owner == self.history.owner or owner in alive:
                continue
            message = f"the replica running this answer ({owner}) stopped"
            answer = await self.relay.end_lost(run_id, message)
            if answer is None:  # it published nothing: what its event log holds
                answer = answer_of(await asyncio.to_thread(self.history.events, run_id))
            ended = await asyncio.to_thread(
                self.history.interrupt, run_id, answer, "worker_lost", message
            )
            if ended:
                log.warning("run %s: %s; ended as interrupted", run_id, message)
