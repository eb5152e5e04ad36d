"""The contract of a LiveLog (where runs still answering are read while they stream): this
process's LiveRuns, and the Replicas that read every replica's runs through a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from streamrag.answer.events import Done, Event, RunStarted, Token
from streamrag.config import Settings
from streamrag.history.sqlite import SQLiteHistory
from streamrag.server.errors import ApiError
from streamrag.server.live import LiveLog, LiveRuns
from streamrag.server.metrics import Metrics
from streamrag.server.relay import RunRelay
from streamrag.server.replicas import Replicas

HEARTBEAT_S = 0.2


async def answer(
    run_id: str, tokens: int, delay: float, pause: float = 0.0
) -> AsyncIterator[Event]:
    """A run's events as the engine streams them: started, tokens, done."""
    yield RunStarted(run_id=run_id, seq=0, session_id="s", trace_id="t", question="q")
    await asyncio.sleep(pause)
    for i in range(tokens):
        await asyncio.sleep(delay)
        yield Token(run_id=run_id, seq=i + 1, text=f"t{i} ")
    yield Done(
        run_id=run_id,
        seq=tokens + 1,
        answer="".join(f"t{i} " for i in range(tokens)),
        citations=[],
        finish_reason="stop",
        timings={},
        usage={},
    )


Scenario = Callable[[LiveRuns, LiveLog], Awaitable[None]]


@pytest.fixture(params=["in-process", "redis"])
def run_scenario(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> Callable[[Scenario], None]:
    """Run a scenario with the runs' owner (LiveRuns) and the log that reads them: the same
    LiveRuns, or another replica's Replicas over Redis."""

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            async with AsyncExitStack() as stack:
                if request.param == "in-process":
                    owner = LiveRuns(grace_s=5, metrics=Metrics(), heartbeat_s=HEARTBEAT_S)
                    await scenario(owner, owner)
                    return
                url = request.getfixturevalue("redis_url")
                config = settings.model_copy(update={"heartbeat_s": HEARTBEAT_S})
                history = SQLiteHistory(tmp_path / "history.sqlite")
                sides: list[Any] = []
                for _ in range(2):  # the replica that answers, and the one that reads
                    relay = RunRelay(url)
                    runs = LiveRuns(
                        grace_s=5, metrics=Metrics(), heartbeat_s=HEARTBEAT_S, relay=relay
                    )
                    replicas = Replicas(relay, runs, history, config)
                    await replicas.join()
                    stack.push_async_callback(replicas.leave)
                    sides.append((runs, replicas))
                await scenario(sides[0][0], sides[1][1])

        asyncio.run(main())

    return run


async def collect(log: LiveLog, run_id: str, after: int = -1) -> list[Event | None]:
    return [event async for event in log.follow(run_id, after)]


def test_an_unknown_run_is_not_there(run_scenario: Callable[[Scenario], None]) -> None:
    async def scenario(owner: LiveRuns, log: LiveLog) -> None:
        assert await log.last("nope") is None
        with pytest.raises(ApiError) as raised:
            await log.cancel("nope")
        assert raised.value.status == 404

    run_scenario(scenario)


def test_followers_get_every_event_once_in_order_as_it_comes(
    run_scenario: Callable[[Scenario], None],
) -> None:
    async def scenario(owner: LiveRuns, log: LiveLog) -> None:
        owner.start("r1", answer("r1", tokens=8, delay=0.03))
        await asyncio.sleep(0.1)
        last = await log.last("r1")
        assert last is not None and last[1] is False and 0 <= last[0] < 9
        whole, late = await asyncio.gather(collect(log, "r1"), collect(log, "r1", after=4))
        events = [e for e in whole if e is not None]
        assert [e.seq for e in events] == list(range(10)) and isinstance(events[-1], Done)
        assert [e.seq for e in late if e is not None] == list(range(5, 10))
        assert await log.last("r1") == (9, True)
        assert await collect(log, "r1", after=9) == []  # nothing after done

    run_scenario(scenario)


def test_a_quiet_run_sends_heartbeats(run_scenario: Callable[[Scenario], None]) -> None:
    async def scenario(owner: LiveRuns, log: LiveLog) -> None:
        owner.start("r2", answer("r2", tokens=2, delay=0.01, pause=HEARTBEAT_S * 4))
        await asyncio.sleep(0.05)
        followed = await collect(log, "r2")
        assert followed.count(None) >= 2 and isinstance(followed[-1], Done)

    run_scenario(scenario)


def test_a_cancel_ends_the_run_and_its_followers(
    run_scenario: Callable[[Scenario], None],
) -> None:
    async def scenario(owner: LiveRuns, log: LiveLog) -> None:
        owner.start("r3", answer("r3", tokens=200, delay=0.02))
        follower = asyncio.create_task(collect(log, "r3"))
        await asyncio.sleep(0.2)
        assert await log.cancel("r3") is True
        events = [e for e in await follower if e is not None]
        assert isinstance(events[-1], Done) and events[-1].finish_reason == "cancelled"
        assert [e.seq for e in events] == list(range(len(events))) and len(events) < 100
        assert await log.cancel("r3") is False

    run_scenario(scenario)


def test_the_owner_shows_an_event_only_once_other_replicas_can_read_it(redis_url: str) -> None:
    """With Redis, a client of the owner never reads an event the shared log lacks: were the
    owner killed then, a resume elsewhere would go on from there."""

    async def main() -> None:
        relay = RunRelay(redis_url, batch_s=0.05)
        owner = LiveRuns(grace_s=5, metrics=Metrics(), heartbeat_s=HEARTBEAT_S, relay=relay)
        try:
            owner.start("r4", answer("r4", tokens=30, delay=0.005))
            async for event in owner.follow("r4", -1):
                if event is None:  # a heartbeat
                    continue
                published = await relay.last("r4")
                assert published is not None and published[0] >= event.seq
        finally:
            await owner.close()
            await relay.aclose()

    asyncio.run(main())


def test_a_closing_relay_publishes_what_it_queued(redis_url: str) -> None:
    async def main() -> None:
        relay = RunRelay(redis_url, batch_s=60)  # nothing would go before the close
        events = [event async for event in answer("r5", tokens=3, delay=0)]
        shown: list[int] = []
        relay.send(events[:1], lambda: shown.append(1))
        relay.send(events[1:], lambda: shown.append(2))
        await asyncio.sleep(0.05)  # the first batch went at once, the rest waits
        await relay.aclose()
        reader = RunRelay(redis_url)
        try:
            published = [event async for event in reader.follow("r5", -1, 1.0, 1.0)]
            assert [event.seq for event in published if event is not None] == [0, 1, 2, 3, 4]
            assert shown == [1, 2]
        finally:
            await reader.aclose()

    asyncio.run(main())
