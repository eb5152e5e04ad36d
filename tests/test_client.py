"""``streamrag.Client`` against a real server behind a proxy that cuts every connection
part-way: the client resumes by itself and sees every event exactly once."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest

from streamrag import Client
from streamrag.answer.events import Done, Event, Sources
from streamrag.client import ServerError
from streamrag.config import Settings

from conftest import ScriptedLLM, free_port, serving


@contextmanager
def cutting_proxy(target_port: int, seed: int = 3) -> Iterator[tuple[str, list[int]]]:
    """A TCP proxy to 127.0.0.1:target_port that closes each connection after a random
    number of response bytes; yields its URL and the cut points used."""
    rng = random.Random(seed)
    cuts: list[int] = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def pipe(source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := source.recv(4096):
                if limit is not None and sent + len(data) >= limit:
                    sink.sendall(data[: limit - sent])
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed at the end of the test
                return
            upstream = socket.create_connection(("127.0.0.1", target_port))
            cut = rng.randint(12_000, 20_000)
            cuts.append(cut)
            threading.Thread(target=pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client, cut), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}", cuts
    finally:
        stop.set()
        listener.close()


def check(events: list[Event], tokens: list[str]) -> None:
    assert [event.seq for event in events] == list(range(len(events)))
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop"
    assert isinstance(events[2], Sources) and events[2].sources[0].number == 1
    assert "".join(e.text for e in events if e.type == "token") == "".join(tokens) == done.answer


def test_the_client_resumes_through_dropped_connections(server_settings: Settings) -> None:
    tokens = [f"词{i} " for i in range(300)]
    with serving(server_settings, ScriptedLLM(tokens, delay=0.005)) as http:
        port = http.base_url.port
        assert port is not None
        with cutting_proxy(port) as (url, cuts):
            events = list(Client(url, reconnect_delay_s=0.01).stream("退货要几天？"))
    assert len(cuts) >= 4, "the proxy cut the stream several times"
    check(events, tokens)


def test_the_async_client_resumes_too(server_settings: Settings) -> None:
    tokens = [f"t{i} " for i in range(300)]

    async def run(url: str) -> list[Event]:
        return [e async for e in Client(url, reconnect_delay_s=0.01).astream("退货")]

    with serving(server_settings, ScriptedLLM(tokens, delay=0.005)) as http:
        port = http.base_url.port
        assert port is not None
        with cutting_proxy(port, seed=11) as (url, cuts):
            events = asyncio.run(run(url))
    assert len(cuts) >= 4
    check(events, tokens)


def test_client_errors_name_the_problem(server_settings: Settings) -> None:
    with serving(server_settings, ScriptedLLM(["x"])) as http:
        client = Client(str(http.base_url))
        expected = "404 knowledge_base_not_found: no knowledge base named 'nope'"
        with pytest.raises(ServerError, match=expected):
            list(client.stream("x", kb="nope"))
        assert client.ask("退货").text == "x"
    with pytest.raises(Exception, match="no answer stream from the server"):
        list(Client(f"http://127.0.0.1:{free_port()}").stream("x"))


def test_ask_url_uses_a_running_server(server_settings: Settings) -> None:
    with serving(server_settings, ScriptedLLM(["七天", "[1]"])) as http:
        result = subprocess.run(
            [sys.executable, "-m", "streamrag", "ask", "退货要几天？", "--url", str(http.base_url)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("七天[1]") and "returns-policy.md" in result.stdout
