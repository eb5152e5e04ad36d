"""Live runs shared between replicas through Redis (``STREAMRAG_REDIS_URL``).

The replica that runs an answer (its owner) appends every event to a Redis stream,
``streamrag:run:<run_id>``, whose entry ids are the events' seqs (``<seq + 1>-0``), so a
reader on any replica resumes after a ``Last-Event-ID`` with one ``XREAD``: nothing lost,
nothing repeated. The owner never waits for Redis: :meth:`RunRelay.send` queues the events,
and one writer task per replica appends all its runs' queued events with one command, at most
once every ``batch_s`` (a group commit), retrying what Redis did not take. The owner's own
followers read an event once it is in Redis (while Redis is reachable), so no client has seen
more than another replica can resume. The stream expires ``keep_s`` after the run's
``done``; the run's record and event log (the history store) stay the lasting copy.

Ingests of one knowledge base take turns through a Redis lock (``streamrag:lock:ingest:<kb>``).
Cancel and session-delete requests are published on ``streamrag:cancel``; every replica
listens and stops its own runs. A replica that follows a run it does not own marks it
followed (``streamrag:followed:<run_id>``, expiring), so the owner's grace period for a
client that went away does not cancel a run a client reads elsewhere. Each replica beats
(``streamrag:replica:<host>:<pid>``, expiring); a run whose owner's beat has expired is ended
by whichever replica sees it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import redis as sync_redis
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from streamrag.answer.events import Done, Event, answer_of, ending, event_from_dict
from streamrag.config import redact
from streamrag.errors import BackendUnavailable
from streamrag.server.errors import ApiError

log = logging.getLogger("streamrag.server")

_CANCEL = "streamrag:cancel"
# XADD each (stream, id, event) of ARGV and EXPIRE it when asked, in one round trip and one
# command; an id not above the stream's last is an event added already (by a retry)
_APPEND = """
for i = 1, #ARGV, 4 do
  local key = KEYS[tonumber(ARGV[i])]
  local added = redis.pcall('XADD', key, ARGV[i + 1], 'event', ARGV[i + 2])
  if type(added) == 'table' and added.err and not string.find(added.err, 'equal or smaller') then
    return added
  end
  if ARGV[i + 3] ~= '0' then redis.call('EXPIRE', key, ARGV[i + 3]) end
end
return #ARGV / 4
"""
SEND_RETRY_S = 1.0  # how long the writer waits after Redis refused a batch


def _stream(run_id: str) -> str:
    return f"streamrag:run:{run_id}"


def _replica(replica: str) -> str:
    return f"streamrag:replica:{replica}"


def _followed(run_id: str) -> str:
    return f"streamrag:followed:{run_id}"


class RelayUnavailable(ApiError):
    """Redis cannot be reached: which replica runs what is unknown."""

    @classmethod
    def because(cls, exc: Exception) -> RelayUnavailable:
        return cls(503, "redis_unavailable", f"the replicas' Redis cannot be reached: {exc}")


def ensure_reachable(url: str) -> None:
    """Refuse to start without the replicas' Redis: :class:`BackendUnavailable` naming its
    URL without the password."""
    try:
        sync_redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except sync_redis.RedisError as exc:
        raise BackendUnavailable(f"Redis at {redact(url)} cannot be reached: {exc}") from exc


class RunRelay:
    """A run's events and cancel requests, shared by every replica through one Redis."""

    def __init__(self, url: str, *, keep_s: float = 3600.0, batch_s: float = 0.005) -> None:
        # a Redis that cannot be reached fails fast instead of stalling the answers
        self.redis = redis.from_url(
            url,
            socket_connect_timeout=2,
            health_check_interval=30,
            # a pooled connection that Redis closed when it restarted: one new try at once
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[redis.ConnectionError],
        )
        self.keep_s = keep_s
        self.batch_s = batch_s
        self._append = self.redis.register_script(_APPEND)
        self._outbox: list[tuple[list[Event], Callable[[], None]]] = []
        self._pending = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    def send(self, events: list[Event], then: Callable[[], None]) -> None:
        """Queue events for :meth:`publish` (the owner calls it, in seq order); ``then()`` is
        called once they are in Redis, or once Redis has refused them (they stay queued, to
        be published when it is back)."""
        self._outbox.append((events, then))
        self._pending.set()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="relay-writer")

    async def _write(self) -> None:
        """Publish what was queued, all runs at once (a group commit): at once after a quiet
        spell, else what came in the ``batch_s`` since the last batch."""
        failing_since: float | None = None
        unpublished: list[Event] = []
        clock = asyncio.get_running_loop().time
        last_batch = 0.0
        while True:
            await self._pending.wait()
            if (wait := last_batch + self.batch_s - clock()) > 0 and not self._closing:
                await asyncio.sleep(wait)
            last_batch = clock()
            self._pending.clear()
            queued, self._outbox = self._outbox, []
            unpublished += [event for events, _ in queued for event in events]
            try:
                await self.publish(*unpublished)
                unpublished, failing_since = [], None
            except Exception as exc:  # Redis away: this replica's followers read on
                failing_since = failing_since or clock()
                if clock() - failing_since > self.keep_s:
                    log.error(
                        "Redis away for %.0f s: %d events dropped", self.keep_s, len(unpublished)
                    )
                    unpublished = []
                else:
                    log.warning(
                        "other replicas do not see %d events yet: %s", len(unpublished), exc
                    )
                    self._pending.set()
            for _, then in queued:
                then()
            if self._closing and not unpublished and not self._outbox:
                return
            if unpublished:
                await asyncio.sleep(SEND_RETRY_S)

    async def publish(self, *events: Event) -> None:
        """Append events to their runs' streams with one command (the owner calls it, in seq
        order). A stream's expiry is set with its first event and reset at ``done``. An
        event already there (a retry whose first try got through) is not added twice."""
        if not events:
            return
        keys: dict[str, int] = {}
        args: list[str | int] = []
        for event in events:
            key = keys.setdefault(_stream(event.run_id), len(keys) + 1)
            if isinstance(event, Done):
                expire = int(self.keep_s)
            elif event.seq == 0:
                expire = int(self.keep_s) * 24  # a run longer than a day: gone
            else:
                expire = 0
            args += (key, f"{event.seq + 1}-0", event.to_json(), expire)
        await self._append(keys=list(keys), args=args)

    async def last(self, run_id: str) -> tuple[int, bool] | None:
        """The seq of the run's last published event and whether it is its ``done``; None
        when no replica publishes (or recently published) this run."""
        try:
            last = await self.redis.xrevrange(_stream(run_id), count=1)
        except redis.RedisError as exc:
            raise RelayUnavailable.because(exc) from exc
        if not last:
            return None
        entry_id, fields = last[0]
        done = json.loads(fields[b"event"])["type"] == "done"
        return int(entry_id.split(b"-")[0]) - 1, done

    async def follow(
        self, run_id: str, after: int, heartbeat_s: float, mark_s: float
    ) -> AsyncIterator[Event | None]:
        """The events with seq > ``after``, then live ones until ``done``; None after every
        ``heartbeat_s`` without one. While it reads, the run is marked followed."""
        key, last = _stream(run_id), f"{after + 1}-0"
        if (published := await self.last(run_id)) and published[1] and published[0] <= after:
            return  # it ended, and its done was read already
        while True:
            try:
                await self.redis.set(_followed(run_id), b"1", px=int(mark_s * 1000))
                found = await self.redis.xread({key: last}, block=int(heartbeat_s * 1000))
            except redis.RedisError as exc:
                raise RelayUnavailable.because(exc) from exc
            if not found:
                yield None
                continue
            for entry_id, fields in found[0][1]:
                last = entry_id
                event = event_from_dict(json.loads(fields[b"event"]))
                yield event
                if isinstance(event, Done):
                    return

    async def beat(self, replica: str, timeout_s: float) -> None:
        """Say this replica is alive for ``timeout_s`` more seconds."""
        await self.redis.set(_replica(replica), b"1", px=int(timeout_s * 1000))

    async def alive(self, replicas: set[str]) -> set[str]:
        """Those of ``replicas`` whose last beat has not expired."""
        ordered = sorted(replicas)
        if not ordered:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for replica in ordered:
                pipe.exists(_replica(replica))
            found = await pipe.execute()
        return {replica for replica, exists in zip(ordered, found, strict=True) if exists}

    async def end_lost(self, run_id: str, message: str) -> str | None:
        """End the stream of a run whose replica died: an ``error`` (``worker_lost``,
        retryable) and a ``done`` (``interrupted``) after the last event it published, so its
        followers end. Its partial answer, or None when it published nothing. Two replicas
        doing it at once append once: the entry ids are the seqs."""
        published = [
            event_from_dict(json.loads(fields[b"event"]))
            for _, fields in await self.redis.xrange(_stream(run_id))
        ]
        if not published:
            return None
        answer = answer_of(published)
        if isinstance(published[-1], Done):
            return answer
        closing = ending(
            published, code="worker_lost", message=message, finish_reason="interrupted"
        )
        await self.publish(*closing)  # another replica that ended it first: added once
        return answer

    async def followed(self, run_id: str) -> bool:
        """Whether a client reads this run on another replica."""
        return bool(await self.redis.exists(_followed(run_id)))

    async def cancel(self, *, run_id: str | None = None, session_id: str | None = None) -> None:
        """Ask every replica to cancel a run, or a session's runs."""
        request = json.dumps({"run_id": run_id, "session_id": session_id})
        try:
            await self.redis.publish(_CANCEL, request)
        except redis.RedisError as exc:
            raise RelayUnavailable.because(exc) from exc

    async def listen(
        self,
        on_cancel: Callable[[str | None, str | None], Awaitable[None]],
        until: Callable[[], bool],
    ) -> None:
        """Call ``on_cancel(run_id, session_id)`` for each cancel request, until ``until()``
        says to stop (asked at least every second: a cancellation of this task that the Redis
        client swallows while it waits does not keep it alive), the connection to Redis fails
        (``redis.RedisError``) or the task is cancelled."""
        async with self.redis.pubsub() as pubsub:
            await pubsub.subscribe(_CANCEL)
            while not until():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message["type"] == "message":
                    await self._cancel(json.loads(message["data"]), on_cancel)

    @staticmethod
    async def _cancel(
        request: dict[str, str | None],
        on_cancel: Callable[[str | None, str | None], Awaitable[None]],
    ) -> None:
        try:
            await on_cancel(request.get("run_id"), request.get("session_id"))
        except Exception:
            log.exception("could not cancel %s", request)

    @asynccontextmanager
    async def lock(self, name: str, ttl_s: float = 30.0) -> AsyncIterator[None]:
        """Hold the replicas' lock ``name`` (waiting for it as long as it takes). It is
        renewed while held and expires ``ttl_s`` after a replica holding it died."""
        lock = self.redis.lock(f"streamrag:lock:{name}", timeout=ttl_s, sleep=0.05)
        try:
            await lock.acquire()
        except redis.RedisError as exc:
            raise RelayUnavailable.because(exc) from exc

        async def renew() -> None:
            while True:
                await asyncio.sleep(ttl_s / 3)
                await lock.reacquire()

        renewing = asyncio.create_task(renew(), name=f"lock-{name}")
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(redis.RedisError):  # expired, or Redis away: it lapses
                await lock.release()

    async def aclose(self, timeout_s: float = 2.0) -> None:
        """Publish what is queued (trying for at most ``timeout_s``), then disconnect."""
        if self._writer is not None:
            self._closing = True
            self._pending.set()
            await asyncio.wait((self._writer,), timeout=timeout_s)
            self._writer.cancel()
            for _, then in self._outbox:
                then()
        await self.redis.aclose()
