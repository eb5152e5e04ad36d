"""Scale-out as a company runs it: three ``streamrag serve`` processes, each with a data
directory of its own, sharing one PostgreSQL and one Redis, behind the sample nginx site
(round robin, no stickiness). Every request works on every replica."""

from __future__ import annotations

import json
import random
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from test_nginx import nginx_in_front
from test_server import sse_messages
from test_server_hardening import sample_env, served_process

from conftest import new_database, running_mock, stats


def events_of(response: httpx.Response, cut: int | None = None) -> tuple[list[dict], str | None]:
    """The events of a stream (the first ``cut`` of them), and the last event id."""
    seen: list[dict[str, Any]] = []
    last_id = None
    for message in sse_messages(response.iter_lines()):
        if "data" in message:
            seen.append(json.loads(message["data"]))
            last_id = message["id"]
            if len(seen) == cut:
                break
    return seen, last_id


def test_three_replicas_share_one_postgresql_and_one_redis(
    tmp_path: Path, postgres_server: Any, redis_url: str
) -> None:
    with running_mock(first_token_ms=10, inter_token_ms=20, tokens=40) as (mock, _):
        shared = {
            "STREAMRAG_DATABASE_URL": new_database(postgres_server),
            "STREAMRAG_REDIS_URL": redis_url,
            "STREAMRAG_REPLICA_TIMEOUT_S": "3",
        }
        env = sample_env(tmp_path / "ingest", mock, **shared)  # the sample, once, into PG
        with ExitStack() as stack:
            replicas = [
                stack.enter_context(served_process({**env, "STREAMRAG_HOME": str(home)}))
                for home in (tmp_path / "a", tmp_path / "b", tmp_path / "c")
            ]
            clients = [client for client, _ in replicas]
            proxy = stack.enter_context(nginx_in_front(*clients, directory=tmp_path))

            # uploads and deletes land on different replicas; every replica sees them
            for name, text in (("保修.txt", "冰箱保修三年。"), ("shipping.md", "Ships in 2 days.")):
                report = proxy.post(
                    "/v1/kbs/faq/documents",
                    params={"stream": "false"},
                    files=[("files", (name, text.encode()))],
                ).json()
                assert report["ingested"] == [name], report
            for client in clients:
                documents = client.get("/v1/kbs/faq/documents").json()
                assert sorted(d["source"] for d in documents) == ["shipping.md", "保修.txt"]
                hits = client.post("/v1/kbs/faq/search", json={"query": "保修", "k": 1}).json()
                assert "三年" in hits["hits"][0]["text"]
            warranty = next(d for d in documents if d["source"] == "保修.txt")
            assert proxy.delete(f"/v1/kbs/faq/documents/{warranty['doc_id']}").status_code == 200
            for client in clients:
                assert len(client.get("/v1/kbs/faq/documents").json()) == 1

            # streams cut at random points resume through nginx on whichever replica
            rng = random.Random(20261203)
            for question in range(6):
                events: list[dict[str, Any]] = []
                request = proxy.stream(
                    "POST", "/v1/chat/stream", json={"question": f"退货{question}"}
                )
                while True:
                    with request as response:
                        assert response.status_code == 200, response.read()
                        more, last_id = events_of(response, cut=rng.randint(1, 15))
                    events += more
                    if events[-1]["type"] == "done":
                        break
                    request = proxy.stream(
                        "GET",
                        f"/v1/runs/{events[0]['run_id']}/events",
                        headers={"Last-Event-ID": last_id or ""},
                    )
                assert [e["seq"] for e in events] == list(range(len(events)))
                tokens = "".join(e["text"] for e in events if e["type"] == "token")
                assert events[-1]["answer"] == tokens and events[-1]["finish_reason"] == "stop"

            # a cancel on another replica stops the upstream of the one answering
            stats(mock, "?reset=1")
            with clients[0].stream("POST", "/v1/chat/stream", json={"question": "运费？"}) as r:
                rest: list[dict[str, Any]] = []
                for message in sse_messages(r.iter_lines()):
                    if "data" in message:
                        rest.append(json.loads(message["data"]))
                        if len(rest) == 5:
                            run_id = rest[0]["run_id"]
                            cancelled = clients[1].post(f"/v1/runs/{run_id}/cancel")
                            assert cancelled.json() == {"run_id": run_id, "cancelled": True}
            assert rest[-1]["type"] == "done" and rest[-1]["finish_reason"] == "cancelled"
            assert stats(mock)["records"][-1]["client_closed_early"]
            assert clients[2].get(f"/v1/runs/{run_id}").json()["finish_reason"] == "cancelled"

            # a replica killed mid-answer: another ends its run, the client resumes there
            killed_client, killed = replicas[2]
            with killed_client.stream("POST", "/v1/chat/stream", json={"question": "退货？"}) as r:
                seen, last_id = events_of(r, cut=6)
                killed.send_signal(signal.SIGKILL)
                killed.wait()
            lost_at = time.monotonic()
            run_id = seen[0]["run_id"]
            resumed = proxy.get(
                f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": last_id}, timeout=60
            )
            ended_after = time.monotonic() - lost_at
            rest = [
                json.loads(m["data"])
                for m in sse_messages(iter(resumed.text.splitlines()))
                if "data" in m
            ]
            events = seen + rest
            assert [e["seq"] for e in events] == list(range(len(events)))
            assert events[-2]["type"] == "error" and events[-2]["code"] == "worker_lost"
            assert events[-1]["finish_reason"] == "interrupted" and ended_after < 3 + 2 + 5
            record = proxy.get(f"/v1/runs/{run_id}").json()
            assert record["finish_reason"] == "interrupted"
            assert record["answer"] == "".join(e["text"] for e in events if e["type"] == "token")
