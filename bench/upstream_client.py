"""CPU to read an upstream chat stream, by HTTP client (why llm/openai_compat.py reads it as
it does).

Starts ../shared/bench/mockllm.py (200 tokens, 20 ms apart) and reads C concurrent streams
from it with: the openai SDK as is (httpx2, a pydantic chunk per token), the SDK over its
aiohttp transport with and without chunk models, plain httpx and plain aiohttp. Prints CPU
per 200-token stream (the process's user + system time over the streams).

    python bench/upstream_client.py [--streams 100] [--shared ../shared/bench]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import openai

ROOT = Path(__file__).resolve().parents[1]
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def count(line: str | bytes) -> int:
    text = line.decode() if isinstance(line, bytes) else line
    if not text.startswith("data: ") or text.strip() == "data: [DONE]":
        return 0
    choices = json.loads(text[6:])["choices"]
    return int(bool(choices and choices[0]["delta"].get("content")))


async def sdk_models(client: openai.AsyncOpenAI) -> int:
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    return sum([bool(c.choices and c.choices[0].delta.content) async for c in stream])


async def sdk_lines(client: openai.AsyncOpenAI) -> int:
    create = client.chat.completions.with_streaming_response.create
    async with create(model="m", messages=MESSAGES, stream=True) as response:
        return sum([count(line) async for line in response.iter_lines()])


def plain_httpx(url: str) -> Callable[[httpx.AsyncClient], Awaitable[int]]:
    async def read(client: httpx.AsyncClient) -> int:
        body = {"model": "m", "stream": True, "messages": MESSAGES}
        async with client.stream("POST", f"{url}/chat/completions", json=body) as response:
            return sum([count(line) async for line in response.aiter_lines()])

    return read


def plain_aiohttp(url: str) -> Callable[[aiohttp.ClientSession], Awaitable[int]]:
    async def read(session: aiohttp.ClientSession) -> int:
        body = {"model": "m", "stream": True, "messages": MESSAGES}
        async with session.post(f"{url}/chat/completions", json=body) as response:
            return sum([count(line.strip()) async for line in response.content])

    return read


async def measure(make: Callable[[], Any], read: Callable[[Any], Awaitable[int]], n: int) -> float:
    client = make()
    try:
        await read(client)  # warm: connection, lazy imports
        started = cpu_s()
        tokens = await asyncio.gather(*(read(client) for _ in range(n)))
        assert all(t == 200 for t in tokens), tokens
        return (cpu_s() - started) / n * 1000
    finally:
        await (client.aclose() if isinstance(client, httpx.AsyncClient) else client.close())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "bench")
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mock = subprocess.Popen(
        [sys.executable, str(args.shared / "mockllm.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)

        def sdk(aio: bool) -> Callable[[], openai.AsyncOpenAI]:
            http = openai.DefaultAioHttpClient if aio else openai.DefaultAsyncHttpxClient
            return lambda: openai.AsyncOpenAI(
                base_url=url, api_key="x", max_retries=0, http_client=http()
            )

        limits = httpx.Limits(max_connections=None)
        cases: list[tuple[str, Callable[[], Any], Callable[[Any], Awaitable[int]]]] = [
            ("openai SDK, default transport, chunk models", sdk(False), sdk_models),
            ("openai SDK, aiohttp transport, chunk models", sdk(True), sdk_models),
            ("openai SDK, aiohttp transport, lines (streamrag)", sdk(True), sdk_lines),
            ("httpx, lines", lambda: httpx.AsyncClient(limits=limits), plain_httpx(url)),
            ("aiohttp, lines", lambda: aiohttp.ClientSession(), plain_aiohttp(url)),
        ]
        print(f"CPU per 200-token stream, {args.streams} concurrent streams")
        for name, make, read in cases:
            ms = asyncio.run(measure(make, read, args.streams))
            print(f"  {name:<52} {ms:7.1f} ms")
    finally:
        mock.terminate()
        mock.wait()


if __name__ == "__main__":
    main()
