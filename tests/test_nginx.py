"""deploy/nginx.conf in a real nginx in front of real streamrag servers: tokens arrive one by
one, a client that goes away stops the answer, uploads stream through, and with two replicas
sharing Redis a stream resumes whichever replica nginx picks."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai

from conftest import ScriptedLLM, free_port, serving

SITE = Path(__file__).resolve().parents[1] / "deploy" / "nginx.conf"
MAIN = """\
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    include {dir}/site.conf;
}}
"""


@contextmanager
def nginx_in_front(*backends: httpx.Client, directory: Path) -> Iterator[httpx.Client]:
    """The sample site, pointed at ``backends`` (round robin), served by nginx on a free
    port."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is not installed (scripts/test.sh installs it)"
    port = free_port()
    site = SITE.read_text()
    assert "server 127.0.0.1:8000;" in site and "listen 8080;" in site
    servers = " ".join(f"server {b.base_url.netloc.decode()};" for b in backends)
    site = site.replace("server 127.0.0.1:8000;", servers)
    (directory / "site.conf").write_text(site.replace("listen 8080;", f"listen 127.0.0.1:{port};"))
    (directory / "nginx.conf").write_text(MAIN.format(dir=directory))
    process = subprocess.Popen([nginx, "-c", str(directory / "nginx.conf"), "-p", str(directory)])
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.get("/healthz").raise_for_status()
                    break
                except httpx.TransportError:
                    assert process.poll() is None, (directory / "error.log").read_text()
                    assert time.monotonic() < deadline, "nginx did not start"
                    time.sleep(0.05)
            yield client
    finally:
        process.terminate()
        process.wait(10)


def test_tokens_arrive_one_by_one_through_nginx(server_settings, tmp_path) -> None:
    llm = ScriptedLLM([f"词{i} " for i in range(8)], delay=0.15)
    with (
        serving(server_settings, llm) as backend,
        nginx_in_front(backend, directory=tmp_path) as client,
    ):
        arrivals: list[float] = []
        with client.stream("POST", "/v1/chat/stream", json={"question": "退货？"}) as response:
            assert response.headers["x-trace-id"], "nginx's request id reached streamrag"
            for line in response.iter_lines():
                if line == "event: token":
                    arrivals.append(time.monotonic())
        assert len(arrivals) == 8
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert min(gaps) > 0.08, f"tokens came in bursts through nginx: {gaps}"

        sdk = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="unused")
        times = []
        for chunk in sdk.chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "退货？"}], stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                times.append(time.monotonic())
        assert len(times) == 8 and times[-1] - times[0] > 0.8


def test_a_client_leaving_through_nginx_cancels_the_answer(server_settings, tmp_path) -> None:
    settings = server_settings.model_copy(update={"resume_grace_s": 0})
    llm = ScriptedLLM([f"t{i} " for i in range(200)], delay=0.05)
    with serving(settings, llm) as backend, nginx_in_front(backend, directory=tmp_path) as client:
        with client.stream("POST", "/v1/chat/stream", json={"question": "退货？"}) as response:
            run_id = response.headers["x-run-id"]
            tokens = 0
            for line in response.iter_lines():
                tokens += line == "event: token"
                if tokens == 3:
                    break
        deadline = time.monotonic() + 5
        while not llm.closed:
            assert time.monotonic() < deadline, "the LLM stream was not closed"
            time.sleep(0.02)
        assert llm.produced < 20
        record = backend.get(f"/v1/runs/{run_id}")
        while record.status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.05)
            record = backend.get(f"/v1/runs/{run_id}")
        assert record.json()["finish_reason"] == "cancelled"


def test_uploads_stream_through_nginx(server_settings, tmp_path) -> None:
    with (
        serving(server_settings, ScriptedLLM(["x"])) as backend,
        nginx_in_front(backend, directory=tmp_path) as client,
    ):
        response = client.post(
            "/v1/kbs/viaproxy/documents", files=[("files", ("保修.txt", "冰箱保修三年。".encode()))]
        )
        events = [
            json.loads(line[6:]) for line in response.text.splitlines() if line[:6] == "data: "
        ]
        assert events[-1]["ingested"] == ["保修.txt"]


def test_behind_nginx_a_stream_resumes_on_whichever_replica_nginx_picks(
    server_settings, redis_url, tmp_path
) -> None:
    """Two replicas (one data directory, one Redis) in the sample site's upstream, round
    robin: the client reads a few events at a time, each time on a new connection, so its
    resumes land on both replicas — the one answering and the other."""
    settings = server_settings.model_copy(update={"redis_url": redis_url})
    tokens = [f"t{i} " for i in range(30)]
    with (
        serving(settings, ScriptedLLM(tokens, delay=0.05)) as one,
        serving(settings, ScriptedLLM(tokens, delay=0.05)) as two,
        nginx_in_front(one, two, directory=tmp_path) as client,
    ):
        events: list[dict] = []
        last_id = None
        request = client.stream("POST", "/v1/chat/stream", json={"question": "退货？"})
        for _ in range(40):
            with request as response:
                assert response.status_code == 200, response.read()
                for line in response.iter_lines():
                    if line.startswith("id: "):
                        last_id = line[4:]
                    elif line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                        if events[-1]["type"] == "done" or len(events) % 4 == 0:
                            break
            if events[-1]["type"] == "done":
                break
            run_id = events[0]["run_id"]
            headers = {"Last-Event-ID": last_id}
            request = client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers)
    assert [event["seq"] for event in events] == list(range(len(events)))
    assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "stop"
    assert "".join(e["text"] for e in events if e["type"] == "token") == "".join(tokens)
