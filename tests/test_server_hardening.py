"""What a crash, a hostile request or a failing dependency does to the service: runs survive
a kill -9, deleted sessions stay deleted, errors keep their JSON shape, an EventSource's
reconnect never asks again, the docs need no CDN, the Python API closes cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from streamrag.config import Settings
from streamrag.sample import DOCS

from conftest import ScriptedLLM, free_port, running_mock, serving


@contextmanager
def served_process(env: dict[str, str]) -> Iterator[tuple[httpx.Client, subprocess.Popen]]:
    """``streamrag serve`` as a real process (so that it can be killed)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamrag", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.1)
            yield client, process
    finally:
        process.kill()
        process.wait()


def sample_env(home: Path, mock_base: str, **settings: str) -> dict[str, str]:
    """The environment of a ``streamrag`` process on the mock upstream, with the sample
    ingested into knowledge base "shop" under ``home``."""
    env = {
        **os.environ,
        "STREAMRAG_HOME": str(home),
        "STREAMRAG_LLM_BASE_URL": mock_base,
        "STREAMRAG_EMBED_BASE_URL": mock_base,
        "STREAMRAG_EMBED_MODEL": "mock-embed",
        "STREAMRAG_KB": "shop",
        **settings,
    }
    subprocess.run(
        [sys.executable, "-m", "streamrag", "ingest", str(DOCS), "--kb", "shop"],
        env=env,
        check=True,
        capture_output=True,
    )
    return env


def test_runs_in_flight_survive_a_kill_and_resume_from_their_log(tmp_path: Path) -> None:
    with running_mock(first_token_ms=10, inter_token_ms=50, tokens=400) as (base, _):
        env = sample_env(tmp_path / "home", base)
        runs: dict[str, str] = {}  # run id -> the last event id its client saw
        with served_process(env) as (client, process):
            streams = []
            for i in range(3):
                stream = client.stream(
                    "POST", "/v1/chat/stream", json={"question": f"退货要几天？{i}"}
                )
                response = stream.__enter__()
                streams.append(stream)
                lines = response.iter_lines()
                last = ""
                tokens = 0
                for line in lines:
                    if line.startswith("id: "):
                        last = line[4:]
                    if line == "event: token":
                        tokens += 1
                        if tokens == 5:
                            break
                runs[response.headers["x-run-id"]] = last
            time.sleep(1.5)  # at least one flush of the event log
            process.send_signal(signal.SIGKILL)
            process.wait()
            for stream in streams:
                stream.__exit__(None, None, None)
        with served_process(env) as (client, _):
            for run_id, last_seen in runs.items():
                record = client.get(f"/v1/runs/{run_id}").json()
                assert record["finish_reason"] == "interrupted", record
                assert record["answer"].split()[:5] == ["the", "quick", "brown", "fox", "jumps"]
                session = client.get(f"/v1/sessions/{record['session_id']}")
                assert session.status_code == 200
                resumed = client.get(
                    f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": last_seen}
                )
                assert resumed.status_code == 200
                events = [
                    json.loads(line[6:])
                    for line in resumed.text.splitlines()
                    if line.startswith("data: ")
                ]
                first = int(last_seen.rpartition(":")[2]) + 1
                assert [e["seq"] for e in events] == list(range(first, first + len(events)))
                assert events[-1]["type"] == "done"
                assert events[-1]["finish_reason"] == "interrupted"
                assert events[-1]["answer"] == record["answer"]
                nothing = client.get(
                    f"/v1/runs/{run_id}/events",
                    headers={"Last-Event-ID": f"{run_id}:{events[-1]['seq']}"},
                )
                assert nothing.status_code == 204


def test_deleting_a_session_cancels_its_runs_and_it_stays_deleted(
    server_settings: Settings,
) -> None:
    llm = ScriptedLLM([f"t{i} " for i in range(500)], delay=0.01)
    with serving(server_settings, llm) as client:
        with client.stream(
            "POST", "/v1/chat/stream", json={"question": "退货", "session_id": "gone"}
        ) as response:
            lines = response.iter_lines()
            for line in lines:
                if line == "event: token":
                    break
            run_id = response.headers["x-run-id"]
            assert client.delete("/v1/sessions/gone").status_code == 200
            rest = "\n".join(lines)
        assert '"finish_reason":"cancelled"' in rest
        assert llm.closed and llm.produced < 500
        time.sleep(0.3)
        assert client.get("/v1/sessions/gone").status_code == 404
        assert client.get(f"/v1/runs/{run_id}").status_code == 404
        assert "gone" not in [s["session_id"] for s in client.get("/v1/sessions").json()]


def test_search_and_chat_fall_back_to_bm25_when_embeddings_are_down(
    server_settings: Settings,
) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    settings = server_settings.model_copy(update={"embed_base_url": down})
    with serving(settings, ScriptedLLM(["七天", "[1]"])) as client:
        found = client.post("/v1/kbs/shop/search", json={"query": "退货 几天"})
        assert found.status_code == 200, found.text
        assert found.json()["hits"] and "BM25" in found.json()["degraded"]
        with client.stream("POST", "/v1/chat/stream", json={"question": "退货"}) as response:
            text = "\n".join(response.iter_lines())
        sources = next(
            json.loads(line[6:])
            for line in text.splitlines()
            if line.startswith("data: ") and '"type":"sources"' in line
        )
        assert sources["sources"] and "BM25" in sources["degraded"]
        assert '"finish_reason":"stop"' in text
        vector = client.post("/v1/kbs/shop/search", json={"query": "退货", "mode": "vector"})
        assert vector.status_code == 500 and vector.json()["error"]["code"] == "internal_error"


def test_failed_runs_agree_on_502_and_openai_streams_end_with_an_error(
    server_settings: Settings,
) -> None:
    llm = ScriptedLLM(["七天", "内", "x"], fail_after=2)
    with serving(server_settings, llm) as client:
        chat = client.post("/v1/chat", json={"question": "退货"})
        messages = [{"role": "user", "content": "退货"}]
        completion = client.post(
            "/v1/chat/completions", json={"model": "shop", "messages": messages}
        )
        for response in (chat, completion):
            assert response.status_code == 502, response.text
            assert response.json()["error"]["code"] == "upstream_disconnected"
        streamed = client.post(
            "/v1/chat/completions", json={"model": "shop", "messages": messages, "stream": True}
        )
        data = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
        assert json.loads(data[-1])["error"]["code"] == "upstream_disconnected"
        assert "[DONE]" not in data and '"finish_reason":"error"' not in streamed.text
        first = client.get("/v1/runs").json()[-1]  # newest first: the oldest is last
        assert first["answer"] == "七天内" and first["usage"]["completion_tokens"] == 2


def test_small_things(server_settings: Settings) -> None:
    settings = server_settings.model_copy(update={"max_body_kb": 4})
    with serving(settings, ScriptedLLM(["ok"])) as client:
        assert client.head("/healthz").status_code == 200
        big = client.post("/v1/chat", json={"question": "x" * 5000})
        assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
        chunked = client.post(
            "/v1/chat",
            content=iter([b'{"question": "', b"x" * 5000, b'"}']),
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413
        for name in ("con", "NUL.txt", "a.", ".hidden", "com1"):
            response = client.post("/v1/chat", json={"question": "x", "kb": name})
            assert response.status_code == 422, (name, response.text)
            upload = client.post(f"/v1/kbs/{name}/documents", files={"files": ("a.txt", b"t")})
            assert upload.status_code in (404, 422), (name, upload.text)
        assert not [p.name for p in (settings.home / "kb").iterdir() if "shop" not in p.name]


def test_an_event_source_reconnect_resumes_and_never_asks_again(
    server_settings: Settings,
) -> None:
    llm = ScriptedLLM(["a", "b", "c"])
    with serving(server_settings, llm) as client:
        first = client.get("/v1/chat/stream", params={"q": "退货"})
        ids = [line[4:] for line in first.text.splitlines() if line.startswith("id: ")]
        assert first.text.startswith("retry: ")
        again = client.get(
            "/v1/chat/stream", params={"q": "退货"}, headers={"Last-Event-ID": ids[-1]}
        )
        assert again.status_code == 204
        middle = client.get(
            "/v1/chat/stream", params={"q": "退货"}, headers={"Last-Event-ID": ids[2]}
        )
        assert [line[4:] for line in middle.text.splitlines() if line.startswith("id: ")] == ids[3:]
        assert len(client.get("/v1/runs").json()) == 1, "no second run was started"


def test_docs_need_no_cdn(server_settings: Settings) -> None:
    settings = server_settings.model_copy(update={"api_keys": ["k"]})
    with serving(settings, ScriptedLLM(["ok"])) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "cdn" not in page.text and "https://" not in page.text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            assert client.get(f"/static-offline-docs/{asset}").status_code == 200


def test_the_python_api_closes_cleanly_on_its_own_loop(tmp_path: Path, mock: str) -> None:
    script = f"""
import asyncio, streamrag
async def main():
    async with streamrag.RAG("shop", home={str(tmp_path / "home")!r}, llm_base_url={mock!r},
                             embed_base_url={mock!r}, embed_model="mock-embed") as rag:
        rag.kb.ingest([{str(DOCS)!r}])
        async for event in rag.astream_events("退货要几天？"):
            pass
asyncio.run(main())
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Unclosed" not in result.stderr, result.stderr
