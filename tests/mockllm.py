"""A small OpenAI-compatible upstream for the tests: chat completions streamed with known
timing, deterministic embeddings, and a record of every generation (how many tokens were
written, and whether and when the client went away).

Run as ``python tests/mockllm.py --port P [--first-token-ms 30 --inter-token-ms 20
--tokens 100]``; it binds 127.0.0.1 only. Endpoints: ``POST /v1/chat/completions`` (stream or
not), ``POST /v1/embeddings``, ``POST /v1/rerank`` (the Jina shape: a document scores the
share of the query's characters it holds), ``POST /v1/moderations`` (flags a text holding one of
``FLAGGED``; a chat request of at most 3 tokens is a classifier's: "yes" if its user message
holds one, else "no"), ``GET /v1/models``, ``GET /stats[?reset=1]``,
``GET /health``.
Plain asyncio streams, HTTP/1.1 with keep-alive: nothing but the standard library, so the test
suite carries its own upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import time
from typing import Any

WORDS = (
    "the quick brown fox jumps over the lazy dog while seven silver lanterns glow above "
    "quiet harbor streets"
).split()
DIM = 384
FLAGGED = ("lanterns", "坏话")
_WORD = re.compile(r"\w+")


class Mock:
    def __init__(self, first_token_ms: float, inter_token_ms: float, tokens: int) -> None:
        self.first_token_s = first_token_ms / 1000
        self.inter_token_s = inter_token_ms / 1000
        self.tokens = tokens
        self.records: list[dict[str, Any]] = []
        self.moderated: list[str] = []  # the texts /v1/moderations was asked about

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, _ = head.decode("latin-1").split("\r\n", 1)[0].split(" ", 2)
                headers = dict(
                    (name.strip().lower(), value.strip())
                    for name, _, value in (
                        line.partition(":") for line in head.decode("latin-1").split("\r\n")[1:]
                    )
                    if name
                )
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                if not await self.dispatch(method, target, body, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def dispatch(
        self,
        method: str,
        target: str,
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; False when the connection is to be closed."""
        path, _, query = target.partition("?")
        if path == "/stats":
            send_json(writer, {"records": list(self.records), "moderated": list(self.moderated)})
            if "reset=1" in query:
                self.records.clear()
                self.moderated.clear()
        elif path == "/health":
            send_json(writer, {"ok": True})
        elif path == "/v1/models":
            send_json(writer, {"object": "list", "data": [{"id": "mock-llm", "object": "model"}]})
        elif path == "/v1/embeddings" and method == "POST":
            texts = json.loads(body)["input"]
            texts = [texts] if isinstance(texts, str) else texts
            data = [
                {"object": "embedding", "index": i, "embedding": embed(t)}
                for i, t in enumerate(texts)
            ]
            send_json(writer, {"object": "list", "data": data, "model": "mock-embed"})
        elif path == "/v1/rerank" and method == "POST":
            request = json.loads(body)
            asked = set(request["query"])
            scores = [len(asked & set(doc)) / len(asked) for doc in request["documents"]]
            ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
            results = [{"index": i, "relevance_score": scores[i]} for i in ranked]
            send_json(writer, {"model": request["model"], "results": results})
        elif path == "/v1/moderations" and method == "POST":
            texts = json.loads(body)["input"]
            texts = [texts] if isinstance(texts, str) else texts
            self.moderated += texts
            results = [{"flagged": any(w in t for w in FLAGGED)} for t in texts]
            send_json(writer, {"id": "modr-1", "model": "mock-moderation", "results": results})
        elif path == "/v1/chat/completions" and method == "POST":
            return await self.generate(json.loads(body), reader, writer)
        else:
            send_json(writer, {"error": {"message": f"no route {method} {path}"}}, 404)
        await writer.drain()
        return True

    async def generate(
        self, request: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        record: dict[str, Any] = {"tokens_sent": 0, "client_closed_early": False}
        self.records.append(record)
        texts = [f" {WORDS[i % len(WORDS)]}" for i in range(self.tokens)]
        usage = {"prompt_tokens": 10, "completion_tokens": self.tokens, "total_tokens": 10}
        if not request.get("stream"):
            content = "".join(texts)
            if request.get("max_tokens", 99) <= 3:  # a moderation classifier's question
                asked = request["messages"][-1]["content"]
                self.moderated.append(asked)
                content = "yes" if any(w in asked for w in FLAGGED) else "no"
            else:
                await asyncio.sleep(self.first_token_s + self.inter_token_s * self.tokens)
            message = {"role": "assistant", "content": content}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            record["tokens_sent"] = self.tokens
            send_json(writer, {"object": "chat.completion", "choices": [choice], "usage": usage})
            await writer.drain()
            return True
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        gone = asyncio.ensure_future(reader.read(1))  # b"" when the client closes
        try:
            started = time.monotonic()
            for i, text in enumerate(texts):
                due = started + self.first_token_s + i * self.inter_token_s
                done, _ = await asyncio.wait((gone,), timeout=max(0.0, due - time.monotonic()))
                if done:
                    record.update(client_closed_early=True, t_client_closed=time.time())
                    return False
                delta = {"content": text} if i else {"role": "assistant", "content": text}
                write_chunk(writer, chunk_data(delta, None))
                record["tokens_sent"] = i + 1
            write_chunk(writer, chunk_data({}, "stop"))
            if (request.get("stream_options") or {}).get("include_usage"):
                write_chunk(writer, json.dumps({"choices": [], "usage": usage}).encode())
            write_chunk(writer, b"[DONE]")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        finally:
            gone.cancel()


def chunk_data(delta: dict[str, str], finish_reason: str | None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return json.dumps({"object": "chat.completion.chunk", "choices": [choice]}).encode()


def write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    message = b"data: " + data + b"\n\n"
    writer.write(b"%x\r\n%s\r\n" % (len(message), message))


def send_json(writer: asyncio.StreamWriter, body: Any, status: int = 200) -> None:
    data = json.dumps(body).encode()
    writer.write(
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n".encode()
        + data
    )


def embed(text: str) -> list[float]:
    """A deterministic unit vector: signed hashing of the lowercased words."""
    vector = [0.0] * DIM
    for word in _WORD.findall(text.lower()) or [text]:
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vector[digest % DIM] += 1.0 if (digest >> 40) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first-token-ms", type=float, default=30)
    parser.add_argument("--inter-token-ms", type=float, default=20)
    parser.add_argument("--tokens", type=int, default=100)
    args = parser.parse_args()
    mock = Mock(args.first_token_ms, args.inter_token_ms, args.tokens)

    async def run() -> None:
        server = await asyncio.start_server(mock.serve, "127.0.0.1", args.port)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
