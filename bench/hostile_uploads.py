"""What big, many and hostile uploads do to a running `streamrag serve` (the hardening issue's
targets): `/healthz` latency while a 49 MB text file is ingested, chat TTFT overhead and search
latency in one knowledge base while 8 uploads queue on another, and the server's memory after
~1 MB archive bombs.

The mock upstream of ../shared/bench (chat and embeddings) runs beside the server; everything
is on 127.0.0.1.

    python bench/hostile_uploads.py
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from serve_load import free_port, rss_kb, wait_http  # noqa: E402

SHARED = ROOT.parent / "shared" / "bench"
FIRST_TOKEN_MS = 50  # the mock model's own time to first token, taken off the TTFT
DOCS = ROOT / "src" / "streamrag" / "sample" / "docs"


def tree_rss_mb(pid: int) -> float:
    """The RSS of a process and its children (the ingest workers), in MB."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return (rss_kb(pid) + sum(rss_kb(int(child)) for child in children)) / 1024


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def big_text(megabytes: int) -> bytes:
    line = (
        "第{}条：退货政策规定签收后七天内可以无理由退货，运费由买家承担。Returns within 7 days.\n"
    )
    out = io.StringIO()
    i = 0
    while out.tell() < megabytes * 1024 * 1024 // 2:
        out.write(line.format(i))
        i += 1
    return out.getvalue().encode()


def bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        info = zipfile.ZipInfo("word/document.xml")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:
            for _ in range(1024):
                member.write(bytes(1024 * 1024))
    return buffer.getvalue()


def poll(client: httpx.Client, url: str, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        client.get(url)
        out.append((time.perf_counter() - started) * 1000)
        time.sleep(0.02)


def ttft_and_search(client: httpx.Client, rounds: int) -> tuple[list[float], list[float]]:
    """Milliseconds to the first token of answers in kb "shop" and of searches in it."""
    ttfts: list[float] = []
    searches: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        with client.stream("POST", "/v1/chat/stream", json={"question": "退货政策是什么？"}) as r:
            for line in r.iter_lines():
                if line == "event: token":
                    ttfts.append((time.perf_counter() - started) * 1000 - FIRST_TOKEN_MS)
                    break
        started = time.perf_counter()
        client.post("/v1/kbs/shop/search", json={"query": "退货 运费"}).raise_for_status()
        searches.append((time.perf_counter() - started) * 1000)
    return ttfts, searches


def summary(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.1f} ms, p90 {percentile(values, 0.9):.1f} ms"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="streamrag-hostile-"))
    mock_port, port = free_port(), free_port()
    mock = subprocess.Popen(
        [
            *(sys.executable, str(SHARED / "mockllm.py"), "--port", str(mock_port)),
            *("--tokens", "20", "--first-token-ms", str(FIRST_TOKEN_MS), "--inter-token-ms", "5"),
        ],
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{mock_port}/v1"
    env = {
        **os.environ,
        "STREAMRAG_HOME": str(work / "home"),
        "STREAMRAG_LLM_BASE_URL": base,
        "STREAMRAG_EMBED_BASE_URL": base,
        "STREAMRAG_EMBED_MODEL": "mock-embed",
        "STREAMRAG_KB": "shop",
        "STREAMRAG_UPLOAD_MAX_MB": "200",
    }
    wait_http(f"http://127.0.0.1:{mock_port}/health")
    subprocess.run(
        [sys.executable, "-m", "streamrag", "ingest", str(DOCS), "--kb", "shop"],
        env=env,
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "streamrag", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz")
        with httpx.Client(base_url=url, timeout=600) as client:
            client.post("/v1/kbs/warm/documents", files={"files": ("w.txt", b"warm up")})
            idle: list[float] = []
            stop = threading.Event()
            poller = threading.Thread(target=poll, args=(client, "/healthz", stop, idle))
            poller.start()
            time.sleep(3)
            stop.set()
            poller.join()
            data = big_text(49)
            busy: list[float] = []
            stop = threading.Event()
            poller = threading.Thread(target=poll, args=(client, "/healthz", stop, busy))
            poller.start()
            started = time.perf_counter()
            response = client.post(
                "/v1/kbs/big/documents",
                files={"files": ("big.txt", data)},
                params={"stream": "false"},
            )
            seconds = time.perf_counter() - started
            stop.set()
            poller.join()
            print(
                f"49 MB upload: {response.status_code}, {response.json().get('chunks')} chunks"
                f" in {seconds:.1f} s"
            )
            for name, values in (("idle", idle), ("during the ingest", busy)):
                print(
                    f"  /healthz {name}: p50 {statistics.median(values):.1f} ms, "
                    f"p99 {percentile(values, 0.99):.1f} ms, max {max(values):.1f} ms "
                    f"({len(values)} requests)"
                )

            idle_ttft, idle_search = ttft_and_search(client, 20)
            upload = big_text(4)
            uploads = [
                threading.Thread(
                    target=client.post,
                    args=("/v1/kbs/queue/documents",),
                    kwargs={"files": {"files": (f"u{i}.txt", upload + str(i).encode())}},
                )
                for i in range(8)
            ]
            for thread in uploads:
                thread.start()
            time.sleep(1)
            busy_ttft, busy_search = ttft_and_search(client, 20)
            queued = sum(thread.is_alive() for thread in uploads)
            for thread in uploads:
                thread.join()
            print(f"8 concurrent uploads of {len(upload) / 1e6:.1f} MB into another kb")
            print(f"  ({queued} still running when the measurement ended):")
            for what, idle_values, busy_values in (
                ("chat TTFT overhead", idle_ttft, busy_ttft),
                ("search", idle_search, busy_search),
            ):
                ratio = statistics.median(busy_values) / statistics.median(idle_values)
                print(
                    f"  {what}: idle {summary(idle_values)}; during {summary(busy_values)}"
                    f" ({ratio:.2f}x at p50)"
                )

            before, before_tree = rss_kb(server.pid) / 1024, tree_rss_mb(server.pid)
            bomb_data = bomb()
            threads = [
                threading.Thread(
                    target=client.post,
                    args=("/v1/kbs/bombs/documents",),
                    kwargs={"files": {"files": (f"b{i}.docx", bomb_data)}},
                )
                for i in range(3)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            print(
                f"3 archive bombs of {len(bomb_data) / 1e6:.1f} MB (1 GiB of zeros each): "
                f"server RSS {before:.0f} -> {rss_kb(server.pid) / 1024:.0f} MB, with its "
                f"ingest worker {before_tree:.0f} -> {tree_rss_mb(server.pid):.0f} MB"
            )
    finally:
        server.terminate()
        server.wait()
        mock.kill()


if __name__ == "__main__":
    main()
