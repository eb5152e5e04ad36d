"""Several replicas of ``streamrag serve`` sharing one Redis (``STREAMRAG_REDIS_URL``) and one
data directory: a run started on one is resumed, cancelled and deleted on another. Each
replica is a real uvicorn with its own service (its own live runs), as separate processes
would be."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from test_server import sse_messages
from test_server_hardening import sample_env, served_process

from streamrag.config import Settings

from conftest import ScriptedLLM, free_port, running_mock, running_redis, serving

TOKENS = [f"t{i} " for i in range(40)]


def read_until(
    response: httpx.Response, enough: Callable[[list[dict[str, Any]]], bool]
) -> tuple[list[dict[str, Any]], str]:
    """The events of a stream until ``enough`` of them have come, and the last event id."""
    seen: list[dict[str, Any]] = []
    for message in sse_messages(response.iter_lines()):
        if "data" in message:
            seen.append(json.loads(message["data"]))
            last_id = message["id"]
            if enough(seen):
                return seen, last_id
    raise AssertionError(f"the stream ended after {len(seen)} events")


def replicas_settings(server_settings: Settings, redis_url: str, **changes: Any) -> Settings:
    return server_settings.model_copy(update={"redis_url": redis_url, **changes})


def test_a_stream_started_on_one_replica_resumes_on_another(
    server_settings: Settings, redis_url: str
) -> None:
    """The client leaves replica A after a few events and resumes on B with Last-Event-ID:
    every event once, in order. A's grace for its client (0.3 s, well under the answer's
    ~2 s) does not cancel a run that B's client reads."""
    settings = replicas_settings(server_settings, redis_url, resume_grace_s=0.3)
    with (
        serving(settings, ScriptedLLM(TOKENS, delay=0.05)) as a,
        serving(settings, ScriptedLLM(["not me"])) as b,
    ):
        with a.stream("POST", "/v1/chat/stream", json={"question": "退货要几天？"}) as response:
            seen, last_id = read_until(response, lambda seen: len(seen) == 8)
        run_id = seen[0]["run_id"]
        headers = {"Last-Event-ID": last_id}
        with b.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
            assert response.status_code == 200
            rest = [
                json.loads(m["data"]) for m in sse_messages(response.iter_lines()) if "data" in m
            ]
        again = b.get(
            f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": f"{run_id}:{rest[-1]['seq']}"}
        )
        record = b.get(f"/v1/runs/{run_id}").json()
    events = seen + rest
    assert [event["seq"] for event in events] == list(range(len(events)))
    assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "stop"
    assert "".join(e["text"] for e in events if e["type"] == "token") == "".join(TOKENS)
    assert again.status_code == 204  # nothing after done, from the replica that did not run it
    assert record["finish_reason"] == "stop" and record["answer"] == "".join(TOKENS)


def test_a_cancel_on_one_replica_stops_the_run_on_another(
    server_settings: Settings, redis_url: str
) -> None:
    settings = replicas_settings(server_settings, redis_url)
    llm = ScriptedLLM(TOKENS * 5, delay=0.05)  # ~10 s if nobody stops it
    with serving(settings, llm) as a, serving(settings, ScriptedLLM(["x"])) as b:
        events: list[dict[str, Any]] = []
        started = threading.Event()

        def follow_on_a() -> None:
            with a.stream("POST", "/v1/chat/stream", json={"question": "退货"}) as response:
                for message in sse_messages(response.iter_lines()):
                    if "data" in message:
                        events.append(json.loads(message["data"]))
                        if events[-1]["type"] == "token":
                            started.set()

        reader = threading.Thread(target=follow_on_a)
        reader.start()
        assert started.wait(20)
        run_id = events[0]["run_id"]
        cancelled = b.post(f"/v1/runs/{run_id}/cancel")
        reader.join(20)
        record = b.get(f"/v1/runs/{run_id}").json()
        unknown = b.post("/v1/runs/nope/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
    assert not reader.is_alive() and events[-1]["type"] == "done"
    assert events[-1]["finish_reason"] == "cancelled"
    assert llm.produced < len(TOKENS) * 5 and llm.closed  # the model stopped early
    assert record["finish_reason"] == "cancelled"
    assert unknown.status_code == 404


def test_deleting_a_session_on_one_replica_cancels_its_run_on_another(
    server_settings: Settings, redis_url: str
) -> None:
    settings = replicas_settings(server_settings, redis_url)
    with (
        serving(settings, ScriptedLLM(TOKENS * 5, delay=0.05)) as a,
        serving(settings, ScriptedLLM(["x"])) as b,
    ):
        done = threading.Event()

        def ask_on_a() -> None:
            with httpx.Client(base_url=a.base_url, timeout=30) as client:
                client.post("/v1/chat", json={"question": "退货", "session_id": "s-shared"})
            done.set()

        threading.Thread(target=ask_on_a, daemon=True).start()
        for _ in range(200):
            if b.get("/v1/sessions/s-shared").status_code == 200:
                break
            done.wait(0.05)
        deleted = b.delete("/v1/sessions/s-shared")
        assert done.wait(20), "the run on A was not stopped"
        after = b.get("/v1/sessions/s-shared")
    assert deleted.status_code == 200
    assert after.status_code == 404  # the cancelled run did not bring the session back


def test_replicas_ride_out_a_redis_restart(server_settings: Settings, tmp_path: Path) -> None:
    """Redis stopped under two replicas: each still answers whole (its runs are not shared)
    and what needs Redis answers 503 redis_unavailable; Redis back on its port: a stream
    started on one replica resumes and is cancelled on the other again."""
    port = free_port()
    with ExitStack() as stack:
        redis = ExitStack()
        url = redis.enter_context(running_redis(tmp_path, port))
        settings = replicas_settings(server_settings, url)
        tokens = [f"t{i} " for i in range(120)]
        a = stack.enter_context(serving(settings, ScriptedLLM(tokens, delay=0.05)))
        b = stack.enter_context(serving(settings, ScriptedLLM(tokens, delay=0.05)))
        redis.close()  # Redis stops

        answer = a.post("/v1/chat", json={"question": "退货"})
        assert answer.status_code == 200 and answer.json()["text"] == "".join(tokens)
        gone = b.post("/v1/runs/nope/cancel")
        assert gone.status_code == 503 and gone.json()["error"]["code"] == "redis_unavailable"
        assert gone.headers["retry-after"] == "1"

        stack.enter_context(running_redis(tmp_path, port))  # back, same address
        deadline = time.monotonic() + 20
        while True:
            with a.stream("POST", "/v1/chat/stream", json={"question": "退货？"}) as response:
                seen, last_id = read_until(response, lambda seen: len(seen) == 6)
            run_id = seen[0]["run_id"]
            resumed = b.post(f"/v1/runs/{run_id}/cancel")
            if resumed.status_code == 200:
                break
            assert time.monotonic() < deadline, resumed.text
            time.sleep(0.5)
        assert resumed.json() == {"run_id": run_id, "cancelled": True}
        rest = b.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": last_id})
        events = seen + [
            json.loads(m["data"]) for m in sse_messages(iter(rest.text.splitlines())) if "data" in m
        ]
        assert [e["seq"] for e in events] == list(range(len(events)))
        assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "cancelled"


def test_a_replica_killed_mid_answer_has_its_run_ended_by_another(
    tmp_path: Path, redis_url: str
) -> None:
    """kill -9 the replica that answers: once its beat expires (3 s here, 10 s by default)
    another replica ends the run — its client, resuming there, gets the events up to the
    loss, a retryable worker_lost error and done; the record says interrupted."""
    with running_mock(first_token_ms=10, inter_token_ms=50, tokens=400) as (base, _):
        settings = {"STREAMRAG_REDIS_URL": redis_url, "STREAMRAG_REPLICA_TIMEOUT_S": "3"}
        env = sample_env(tmp_path / "home", base, **settings)
        with served_process(env) as (a, process), served_process(env) as (b, _):
            with a.stream("POST", "/v1/chat/stream", json={"question": "退货要几天？"}) as response:
                seen, last_id = read_until(
                    response, lambda seen: sum(e["type"] == "token" for e in seen) == 5
                )
                process.send_signal(signal.SIGKILL)
                process.wait()
            run_id = seen[0]["run_id"]
            resumed = b.get(
                f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": last_id}, timeout=60
            )
            record = b.get(f"/v1/runs/{run_id}").json()
    rest = [
        json.loads(m["data"]) for m in sse_messages(iter(resumed.text.splitlines())) if "data" in m
    ]
    events = seen + rest
    assert [event["seq"] for event in events] == list(range(len(events)))
    error, done = events[-2:]
    assert error["type"] == "error" and error["code"] == "worker_lost" and error["retryable"]
    assert done["type"] == "done" and done["finish_reason"] == "interrupted"
    answer = "".join(event["text"] for event in events if event["type"] == "token")
    assert done["answer"] == answer and answer.split()[:5] == [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
    ]
    assert record["finish_reason"] == "interrupted" and record["error"]["code"] == "worker_lost"
    assert record["answer"] == answer
