"""The HTTP service on a real uvicorn (127.0.0.1) with real HTTP clients: SSE, resume, cancel,
disconnects, errors. Embeddings come from the local mock server; the LLM is scripted unless a
test is about the upstream connection."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from streamrag.config import Settings
from streamrag.llm.openai_compat import OpenAIChat

from conftest import BACKENDS, ScriptedLLM, serving, stats

# every test here on both backends: the embedded files and PostgreSQL
pytestmark = pytest.mark.parametrize("server_settings", BACKENDS, indirect=True)


def sse_messages(lines: Iterator[str], retry: list[str] | None = None) -> Iterator[dict[str, str]]:
    """Parse an event stream into messages ({'id', 'event', 'data'} or {'comment'}); a
    ``retry:`` field alone is put in ``retry`` (if given), not yielded."""
    message: dict[str, str] = {}
    for line in lines:
        if not line:
            if set(message) == {"retry"}:
                (retry if retry is not None else []).append(message["retry"])
            elif message:
                yield message
            message = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            field, _, value = line.partition(":")
            message[field] = value.removeprefix(" ")


def test_a_question_streams_as_typed_server_sent_events(server_settings: Settings) -> None:
    llm = ScriptedLLM(["七天内", "可以退货", "[1]。"])
    with (
        serving(server_settings, llm) as client,
        client.stream("POST", "/v1/chat/stream", json={"question": "可以退货吗？"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        retry: list[str] = []
        messages = list(sse_messages(response.iter_lines(), retry))
    assert retry == ["3000"], "a browser's EventSource is told how long to wait"
    data = [json.loads(m["data"]) for m in messages]
    run_id = response.headers["x-run-id"]
    assert [m["id"] for m in messages] == [f"{run_id}:{seq}" for seq in range(len(messages))]
    assert [m["event"] for m in messages] == [d["type"] for d in data]
    assert all(d["run_id"] == run_id for d in data)
    types = [d["type"] for d in data]
    assert types[0] == "run.started" and types[-1] == "done"
    assert types.index("sources") < types.index("token") < types.index("citation")
    assert (
        data[-1]["answer"]
        == "七天内可以退货[1]。"
        == "".join(d["text"] for d in data if d["type"] == "token")
    )


def test_get_for_event_source_and_the_recorded_run(server_settings: Settings) -> None:
    with serving(server_settings, ScriptedLLM(["ok"])) as client:
        with client.stream(
            "GET", "/v1/chat/stream", params={"q": "退货", "session_id": "web-1"}
        ) as response:
            data = [json.loads(m["data"]) for m in sse_messages(response.iter_lines())]
        run_id = data[0]["run_id"]
        assert data[0]["session_id"] == "web-1"
        record = client.get(f"/v1/runs/{run_id}").json()
        assert record["answer"] == "ok" and record["finish_reason"] == "stop"
        assert record["retrieved"] == data[-1]["sources"]
        assert [
            r["run_id"] for r in client.get("/v1/runs", params={"session_id": "web-1"}).json()
        ] == [run_id]


def test_runs_are_listed_newest_first_a_page_at_a_time(server_settings: Settings) -> None:
    with serving(server_settings, ScriptedLLM(["ok"])) as client:
        asked = [
            client.post("/v1/chat", json={"question": f"问题 {i}"}).json()["run_id"]
            for i in range(5)
        ]
        first = client.get("/v1/runs", params={"limit": 2}).json()
        second = client.get("/v1/runs", params={"limit": 2, "before": first[-1]["run_id"]}).json()
        rest = client.get("/v1/runs", params={"limit": 9, "before": second[-1]["run_id"]}).json()
    newest_first = asked[::-1]
    assert [r["run_id"] for r in first + second + rest] == newest_first
    assert [r["question"] for r in first] == ["问题 4", "问题 3"]


def test_resuming_from_random_cut_points_loses_and_repeats_nothing(
    server_settings: Settings,
) -> None:
    tokens = [f"t{i} " for i in range(60)]
    llm = ScriptedLLM(tokens, delay=0.01)
    rng = random.Random(7)
    seen: list[dict[str, Any]] = []
    with serving(server_settings, llm) as client:
        with client.stream("POST", "/v1/chat/stream", json={"question": "退货"}) as response:
            run_id = response.headers["x-run-id"]
            for message in sse_messages(response.iter_lines()):
                seen.append({"id": message["id"], **json.loads(message["data"])})
                if len(seen) == 3:
                    break  # the connection drops
        reconnects = 0
        while seen[-1]["type"] != "done":
            cut = rng.randint(1, 12)
            headers = {"Last-Event-ID": seen[-1]["id"]}
            with client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
                assert response.status_code == 200
                for count, message in enumerate(sse_messages(response.iter_lines()), 1):
                    seen.append({"id": message["id"], **json.loads(message["data"])})
                    if count == cut:
                        break
            reconnects += 1
    assert reconnects >= 5
    assert [event["seq"] for event in seen] == list(range(len(seen)))
    answer = "".join(event["text"] for event in seen if event["type"] == "token")
    assert answer == "".join(tokens) == seen[-1]["answer"]
    assert seen[-1]["finish_reason"] == "stop"


def test_after_query_parameter_resumes_too(server_settings: Settings) -> None:
    with serving(server_settings, ScriptedLLM(["a", "b", "c"])) as client:
        with client.stream("POST", "/v1/chat/stream", json={"question": "退货"}) as response:
            everything = [json.loads(m["data"]) for m in sse_messages(response.iter_lines())]
        run_id = everything[0]["run_id"]
        with client.stream("GET", f"/v1/runs/{run_id}/events", params={"after": 2}) as response:
            rest = [json.loads(m["data"]) for m in sse_messages(response.iter_lines())]
    assert rest == everything[3:]


def test_a_dropped_client_cancels_the_upstream_within_50_ms_with_grace_0(
    server_settings: Settings, mock: str
) -> None:
    settings = server_settings.model_copy(update={"resume_grace_s": 0.0})
    stats(mock, "reset=1")
    with serving(settings, OpenAIChat("mock", mock)) as client:
        with client.stream("POST", "/v1/chat/stream", json={"question": "退货"}) as response:
            run_id = response.headers["x-run-id"]
            for message in sse_messages(response.iter_lines()):
                if message.get("event") == "token":
                    break
            dropped = time.time()
        deadline = time.monotonic() + 5
        while True:
            records = [r for r in stats(mock)["records"] if r.get("client_closed_early")]
            if records or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        [upstream] = records
        assert upstream["t_client_closed"] - dropped < 0.05
        assert upstream["tokens_sent"] < 100
        for _ in range(200):  # recorded as it started, then as it ended
            record = client.get(f"/v1/runs/{run_id}").json()
            if record.get("finish_reason", "running") != "running":
                break
            time.sleep(0.05)
        assert record["finish_reason"] == "cancelled" and record["answer"]


def test_a_run_survives_a_drop_within_the_grace_period(server_settings: Settings) -> None:
    llm = ScriptedLLM([f"t{i} " for i in range(30)], delay=0.02)
    with serving(server_settings, llm) as client:
        with client.stream("POST", "/v1/chat/stream", json={"question": "退货"}) as response:
            run_id = response.headers["x-run-id"]
            for message in sse_messages(response.iter_lines()):
                if message.get("event") == "token":
                    break
        time.sleep(0.3)  # away for a while, within the 5 s grace
        with client.stream("GET", f"/v1/runs/{run_id}/events", params={"after": -1}) as response:
            data = [json.loads(m["data"]) for m in sse_messages(response.iter_lines())]
    assert data[-1]["finish_reason"] == "stop" and llm.produced == 30


def test_explicit_cancel_stops_the_run_and_records_it(server_settings: Settings) -> None:
    llm = ScriptedLLM([f"t{i} " for i in range(1000)], delay=0.01)
    with serving(server_settings, llm) as client:
        with client.stream("POST", "/v1/chat/stream", json={"question": "退货"}) as response:
            run_id = response.headers["x-run-id"]
            data = []
            for message in sse_messages(response.iter_lines()):
                data.append(json.loads(message["data"]))
                if len(data) == 8:
                    assert client.post(f"/v1/runs/{run_id}/cancel").json() == {
                        "run_id": run_id,
                        "cancelled": True,
                    }
        record = client.get(f"/v1/runs/{run_id}").json()
        again = client.post(f"/v1/runs/{run_id}/cancel").json()
    assert data[-1]["type"] == "done" and data[-1]["finish_reason"] == "cancelled"
    answer = "".join(d["text"] for d in data if d["type"] == "token")
    assert (
        data[-1]["answer"] == answer == record["answer"] and record["finish_reason"] == "cancelled"
    )
    assert llm.closed and llm.produced < 1000 and again["cancelled"] is False


def test_heartbeats_keep_a_quiet_stream_alive(server_settings: Settings) -> None:
    settings = server_settings.model_copy(update={"heartbeat_s": 0.1})
    llm = ScriptedLLM(["late"], delay=0.45)
    with (
        serving(settings, llm) as client,
        client.stream("POST", "/v1/chat/stream", json={"question": "退货"}) as response,
    ):
        messages = list(sse_messages(response.iter_lines()))
    pings = [m for m in messages if m.get("comment") == "ping"]
    assert len(pings) >= 2


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/v1/chat/stream", {"question": ""}, 422, "question"),
        ("POST", "/v1/chat/stream", {}, 422, "question"),
        ("POST", "/v1/chat/stream", {"question": "x", "top_k": 0}, 422, "top_k"),
        ("POST", "/v1/chat/stream", {"question": "x", "session_id": "../etc"}, 422, "session_id"),
        ("POST", "/v1/chat/stream", {"question": "x" * 4001}, 413, "limit is 4000"),
        ("POST", "/v1/chat/stream", {"question": "x", "kb": "nope"}, 404, "'nope'"),
        ("GET", "/v1/chat/stream", None, 422, "q"),
        ("GET", "/v1/runs/unknown/events", None, 404, "no run 'unknown' is recorded"),
        ("POST", "/v1/runs/unknown/cancel", None, 404, "is not running"),
        ("GET", "/v1/runs/unknown", None, 404, "no run 'unknown'"),
    ],
)
def test_bad_requests_get_precise_json_errors(
    server_settings: Settings, method: str, path: str, body: Any, status: int, needle: str
) -> None:
    with serving(server_settings, ScriptedLLM(["x"])) as client:
        response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert needle in response.text


def test_the_official_openai_sdk_streams_with_sources_and_usage(server_settings: Settings) -> None:
    import openai

    llm = ScriptedLLM(["七天内", "可以退货", "[1]。"])
    settings = server_settings.model_copy(update={"condense": "off"})
    with serving(settings, llm) as client:
        sdk = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="unused")
        assert [m.id for m in sdk.models.list().data] == ["shop"]
        chunks = list(
            sdk.chat.completions.create(
                model="shop",
                messages=[
                    {"role": "user", "content": "退货要几天？"},
                    {"role": "assistant", "content": "七天。"},
                    {"role": "user", "content": "要发票吗？"},
                ],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        whole = sdk.chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "可以退货吗？"}]
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "七天内可以退货[1]。"
    first = chunks[0].model_extra
    assert first["sources"][0]["number"] == 1 and first["sources"][0]["chunk_id"]
    citations = [c.model_extra["citations"] for c in chunks if c.model_extra.get("citations")]
    assert citations[0][0]["number"] == 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 3 and not chunks[-1].choices
    assert whole.choices[0].message.content == "七天内可以退货[1]。"
    assert whole.model_extra["sources"] and whole.model_extra["citations"][0]["number"] == 1
    assert whole.usage.prompt_tokens == 42


def test_the_openai_sdk_completions_endpoint_takes_the_prompt_as_the_question(
    server_settings: Settings,
) -> None:
    """/v1/completions, which LlamaIndex's OpenAILike calls unless is_chat_model=True."""
    import openai

    llm = ScriptedLLM(["七天内", "可以退货", "[1]。"])
    with serving(server_settings, llm) as client:
        sdk = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="unused")
        chunks = list(
            sdk.completions.create(
                model="shop",
                prompt="可以退货吗？",
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        whole = sdk.completions.create(model="shop", prompt="可以退货吗？")
        blank = client.post("/v1/completions", json={"model": "shop", "prompt": " \n"})
    assert "可以退货吗？" in [m["content"] for m in llm.messages if m["role"] == "user"][-1]
    assert {c.object for c in chunks} == {"text_completion"} and chunks[0].id.startswith("cmpl-")
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "七天内可以退货[1]。"
    assert chunks[0].model_extra["sources"][0]["number"] == 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 3
    assert whole.object == "text_completion" and whole.choices[0].text == "七天内可以退货[1]。"
    assert whole.model_extra["citations"][0]["number"] == 1
    assert blank.status_code == 422


def test_openai_history_condenses_the_follow_up(server_settings: Settings) -> None:
    import openai

    settings = server_settings.model_copy(update={"condense": "rules"})
    with serving(settings, ScriptedLLM(["ok"])) as client:
        sdk = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="unused")
        sdk.chat.completions.create(
            model="default",
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "退货要几天？"},
                {"role": "assistant", "content": "七天。"},
                {"role": "user", "content": "要发票吗？"},
            ],
        )
        [record] = client.get("/v1/runs").json()
    assert record["standalone_question"] == "退货要几天？ 要发票吗？"


def test_the_async_openai_sdk_and_an_upstream_error(server_settings: Settings) -> None:
    import asyncio

    import openai

    async def run(base: str) -> tuple[str, Exception]:
        sdk = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        stream = await sdk.chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "退货"}], stream=True
        )
        text = ""
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
        return text, caught.value

    llm = ScriptedLLM(["七天", "内", "x"], fail_after=2)
    with serving(server_settings, llm) as client:
        text, error = asyncio.run(run(str(client.base_url)))
        response = client.post(
            "/v1/chat/completions",
            json={"model": "shop", "messages": [{"role": "user", "content": "退货"}]},
        )
    assert text == "七天内" and "connection reset" in str(error)
    assert (
        response.status_code == 502 and response.json()["error"]["code"] == "upstream_disconnected"
    )


def test_the_non_streaming_and_plain_text_fallbacks(server_settings: Settings) -> None:
    with serving(server_settings, ScriptedLLM(["七天内", "可以退货[1]。"])) as client:
        answer = client.post("/v1/chat", json={"question": "可以退货吗？"}).json()
        text = client.get("/v1/chat/text", params={"q": "可以退货吗？"})
    assert answer["text"] == "七天内可以退货[1]。" and answer["finish_reason"] == "stop"
    assert answer["sources"][0]["number"] == 1 and answer["citations"][0]["number"] == 1
    assert text.headers["content-type"].startswith("text/plain")
    body, _, sources = text.text.partition("\n\n")
    assert body == "七天内可以退货[1]。" and sources.startswith("[1] ")


def test_bad_openai_requests(server_settings: Settings) -> None:
    with serving(server_settings, ScriptedLLM(["x"])) as client:
        empty = client.post("/v1/chat/completions", json={"model": "shop", "messages": []})
        no_question = client.post(
            "/v1/chat/completions",
            json={"model": "shop", "messages": [{"role": "assistant", "content": "hi"}]},
        )
        blank = [{"role": "user", "content": "hi"}, {"role": "user", "content": " \u3000"}]
        tool_after = [
            {"role": "user", "content": "可以退货吗？"},
            {"role": "tool", "content": "{}"},
        ]
        answered = [
            client.post("/v1/chat/completions", json={"model": "shop", "messages": messages})
            for messages in (blank, tool_after)
        ]
        unknown = client.post(
            "/v1/chat/completions",
            json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert empty.status_code == 422
    assert no_question.status_code == 422 and "no user message with text" in no_question.text
    # the question is the last user message with text, whatever follows it
    assert [r.status_code for r in answered] == [200, 200]
    assert unknown.status_code == 404 and "'nope'" in unknown.text


def test_api_keys_guard_every_route_but_healthz(server_settings: Settings) -> None:
    import openai

    settings = server_settings.model_copy(update={"api_keys": ["k-one", "k-two"]})
    with serving(settings, ScriptedLLM(["ok"])) as client:
        missing = client.post("/v1/chat", json={"question": "退货"})
        wrong = client.get("/v1/runs", headers={"Authorization": "Bearer nope"})
        right = client.get("/v1/runs", headers={"Authorization": "Bearer k-two"})
        health = client.get("/healthz")
        sdk = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="k-one")
        reply = sdk.chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "退货"}]
        )
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="bad").models.list()
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert right.status_code == 200 and health.status_code == 200
    assert reply.choices[0].message.content == "ok"


def test_cors_origins_by_configuration(server_settings: Settings) -> None:
    settings = server_settings.model_copy(update={"cors_origins": ["https://kb.example.com"]})
    preflight = {
        "Origin": "https://kb.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    with serving(settings, ScriptedLLM(["ok"])) as client:
        allowed = client.options("/v1/chat/stream", headers=preflight)
        other = client.options(
            "/v1/chat/stream", headers={**preflight, "Origin": "https://evil.example"}
        )
    assert allowed.headers["access-control-allow-origin"] == "https://kb.example.com"
    assert "access-control-allow-origin" not in other.headers


def test_metrics_and_trace_ids(server_settings: Settings) -> None:
    llm = ScriptedLLM([f"t{i} " for i in range(200)], delay=2.0)  # cancelled before a token
    with serving(server_settings, llm) as client:
        with client.stream(
            "POST", "/v1/chat/stream", json={"question": "退货"}, headers={"X-Request-Id": "req-42"}
        ) as response:
            assert response.headers["x-trace-id"] == "req-42"
            first = json.loads(next(sse_messages(response.iter_lines()))["data"])
            client.post(f"/v1/runs/{response.headers['x-run-id']}/cancel")
        llm.deltas, llm.delay = ["ok"], 0.0
        client.post("/v1/chat", json={"question": "退货"})
        text = client.get("/metrics").text
    assert first["trace_id"] == "req-42"
    assert 'streamrag_runs_total{finish_reason="cancelled"} 1.0' in text
    assert 'streamrag_runs_total{finish_reason="stop"} 1.0' in text
    assert "streamrag_cancellations_total 1.0" in text
    assert "streamrag_answer_seconds_count 2.0" in text
    assert "streamrag_time_to_first_token_seconds_count 1.0" in text, "cancelled before a token"
    assert "streamrag_active_streams 0.0" in text


def test_sessions_list_show_rename_delete(server_settings: Settings) -> None:
    with serving(server_settings, ScriptedLLM(["ok"])) as client:
        for question in ("退货要几天？", "要发票吗？"):
            client.post("/v1/chat", json={"question": question, "session_id": "s-1"})
        client.post("/v1/chat", json={"question": "保修多久？", "session_id": "s-2"})
        listed = client.get("/v1/sessions").json()
        shown = client.get("/v1/sessions/s-1").json()
        renamed = client.patch("/v1/sessions/s-1", json={"title": "退货"}).json()
        deleted = client.delete("/v1/sessions/s-1").json()
        gone = client.get("/v1/sessions/s-1")
        empty_title = client.patch("/v1/sessions/s-2", json={"title": ""})
    assert [s["session_id"] for s in listed] == ["s-2", "s-1"]
    assert listed[1]["title"] == "退货要几天？" and listed[1]["runs"] == 2
    assert [r["question"] for r in shown["history"]] == ["退货要几天？", "要发票吗？"]
    assert renamed["title"] == "退货" and deleted == {"session_id": "s-1", "deleted_runs": 2}
    assert gone.status_code == 404 and empty_title.status_code == 422


def test_a_recorded_runs_sources_are_read_back_and_missing_ones_marked(
    server_settings: Settings,
) -> None:
    with serving(server_settings, ScriptedLLM(["七天[1]"])) as client:
        answer = client.post("/v1/chat", json={"question": "退货要几天？"}).json()
        run_id = answer["run_id"]
        sources = client.get(f"/v1/runs/{run_id}/sources").json()
        assert [s["text"] for s in sources] == [s["text"] for s in answer["sources"]]
        assert [s["number"] for s in sources] == list(range(1, len(sources) + 1))
        assert all(s["score"] is None and not s["missing"] for s in sources)
        removed = sources[0]["doc_id"]
        client.delete(f"/v1/kbs/shop/documents/{removed}")
        after = client.get(f"/v1/runs/{run_id}/sources").json()
        info = client.get("/v1/info").json()
    gone = [s for s in after if s["missing"]]
    assert gone and all(s.keys() == {"number", "chunk_id", "missing"} for s in gone)
    assert {s["chunk_id"] for s in gone} == {
        s["chunk_id"] for s in sources if s["doc_id"] == removed
    }
    assert info["default_kb"] == "shop" and info["heartbeat_s"] == 15
