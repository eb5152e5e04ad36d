"""What `streamrag serve` adds on top of its LLM, under load (the HTTP-service issue's targets).

Setup of ../shared/bench/README.md: the mock upstream there (200 ms to the first token, 20 ms
between tokens, 200 tokens; also the embedding model) and the load generator on core 0,
`streamrag serve` on core 1, all separate processes, everything on 127.0.0.1. The knowledge
base is the bundled sample, embedded by the mock. Prints each figure next to its target and
the FastAPI + LlamaIndex / LangChain figures measured the same way.

    python bench/serve_load.py                      # all scenarios, ~6 min
    python bench/serve_load.py --only ttft,cpu      # some of them
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "src" / "streamrag" / "sample" / "questions.jsonl"
BODY = '{"model":"default","stream":true,"messages":[{"role":"user","content":"{question}"}]}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer within {seconds:.0f} s") from None
            time.sleep(0.2)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no RSS for pid {pid}")


class Bench:
    def __init__(self, shared: Path, work: Path, cores: tuple[str, str]) -> None:
        self.shared = shared
        self.work = work
        self.load_core, self.server_core = cores
        self.mock_port = free_port()
        self.port = free_port()
        self.questions = work / "questions.txt"
        self.questions.write_text(
            "".join(json.loads(line)["question"] + "\n" for line in QUESTIONS.open())
        )
        mock = f"http://127.0.0.1:{self.mock_port}/v1"
        self.env = {
            **os.environ,
            "STREAMRAG_HOME": str(work / "home"),
            "STREAMRAG_EMBED_BASE_URL": mock,
            "STREAMRAG_EMBED_MODEL": "mock-embed",
            "STREAMRAG_LLM_BASE_URL": mock,
            "STREAMRAG_LLM_MODEL": "mock",
            "STREAMRAG_RESUME_GRACE_S": "0",
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, core: str, *command: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            ["taskset", "-c", core, *command],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=(self.work / f"{len(self.processes)}.log").open("wb"),
        )
        self.processes.append(process)
        return process

    def start(self) -> None:
        self.spawn(
            self.load_core,
            sys.executable,
            str(self.shared / "mockllm.py"),
            "--port",
            str(self.mock_port),
        )
        wait_http(f"http://127.0.0.1:{self.mock_port}/health")
        sample = ROOT / "src" / "streamrag" / "sample" / "docs"
        subprocess.run(
            [sys.executable, "-m", "streamrag", "ingest", str(sample)],
            env=self.env,
            check=True,
            capture_output=True,
        )
        self.server = self.spawn(
            self.server_core, sys.executable, "-m", "streamrag", "serve", "--port", str(self.port)
        )
        wait_http(f"http://127.0.0.1:{self.port}/healthz")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            process.wait(20)

    def load(self, concurrency: int, requests: int, *extra: str) -> dict:
        out = self.work / "result.json"
        command = [
            "taskset",
            "-c",
            self.load_core,
            sys.executable,
            str(self.shared / "loadgen.py"),
            "--url",
            f"http://127.0.0.1:{self.port}/v1/chat/completions",
            "--body",
            BODY,
            "--token-rule",
            "openai",
            "--questions",
            str(self.questions),
            "-c",
            str(concurrency),
            "-n",
            str(requests),
            "--pid",
            f"server={self.server.pid}",
            "--mock-stats",
            f"http://127.0.0.1:{self.mock_port}/stats",
            "--out",
            str(out),
            "--quiet-json",
            *extra,
        ]
        subprocess.run(command, check=True, capture_output=True)
        return json.loads(out.read_text())


def row(figure: str, value: str, target: str, llamaindex: str, langchain: str, ok: bool) -> None:
    mark = "ok" if ok else "MISSED"
    print(f"{figure:<48} {value:>12} {target:>10} {llamaindex:>11} {langchain:>10}  {mark}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "bench")
    parser.add_argument("--only", default="ttft,streams,cpu,drop,memory")
    parser.add_argument("--max-streams", type=int, default=400)
    args = parser.parse_args()
    only = set(args.only.split(","))
    if not (args.shared / "loadgen.py").exists():
        raise SystemExit(f"no loadgen.py in {args.shared}; pass --shared DIR")

    with tempfile.TemporaryDirectory(prefix="streamrag-load-") as work:
        bench = Bench(args.shared, Path(work), ("0", "1"))
        bench.start()
        try:
            bench.load(5, 10)  # warm-up: models, SQLite pages, connections
            idle_kb = rss_kb(bench.server.pid)
            print(
                f"{'figure':<48} {'streamrag':>12} {'target':>10} {'LlamaIndex':>11} "
                f"{'LangChain':>10}"
            )
            if "ttft" in only:
                for streams, target, li, lc in ((1, 5, 35, 41), (50, 20, 115, 159)):
                    result = bench.load(streams, max(20, 2 * streams), "--ramp-s", "2")
                    overhead = result["summary"]["ttft_overhead_ms"]["p50"]
                    row(
                        f"TTFT overhead p50, {streams} stream(s) (ms)",
                        f"{overhead:.1f}",
                        f"<= {target}",
                        str(li),
                        str(lc),
                        overhead <= target,
                    )
            if "streams" in only:
                best = 0
                for streams in (100, 200, 300, args.max_streams):
                    result = bench.load(streams, streams, "--ramp-s", "4")
                    summary = result["summary"]
                    fine = summary["errors"] == 0 and summary["gap_ms"]["p99"] < 60
                    print(
                        f"  {streams} streams: inter-token gap p99 "
                        f"{summary['gap_ms']['p99']:.1f} ms, errors {summary['errors']}, "
                        f"TTFT overhead p50 {summary['ttft_overhead_ms']['p50']:.1f} ms"
                    )
                    if not fine:
                        break
                    best = streams
                row(
                    "most streams with gap p99 < 60 ms, no errors",
                    str(best),
                    ">= 400",
                    "10",
                    "10",
                    best >= 400,
                )
            if "cpu" in only:
                result = bench.load(100, 200, "--ramp-s", "4")
                cpu_ms = result["procs"]["server"]["cpu_s_per_request"] * 1000
                row(
                    "server CPU per 200-token request, 100 streams (ms)",
                    f"{cpu_ms:.1f}",
                    "<= 10",
                    "84",
                    "117",
                    cpu_ms <= 10,
                )
            if "drop" in only:
                result = bench.load(20, 20, "--disconnect-after", "20")
                drop = result["upstream"]["disconnect"]
                mean = drop["tokens_sent_after_drop_mean"]
                row(
                    "upstream tokens after drop, 20 drops, mean (max)",
                    f"{mean:.1f} ({drop['tokens_sent_after_drop_max']})",
                    "<= 1",
                    "3.3 (13)",
                    "10.5 (22)",
                    mean <= 1,
                )
                print(
                    f"  upstream closed {drop['upstream_close_delay_ms_p50']:.1f} ms (p50), "
                    f"{drop['upstream_close_delay_ms_max']:.1f} ms (max) after the drop"
                )
            if "memory" in only:
                streams = args.max_streams
                result = bench.load(streams, streams, "--ramp-s", "4")
                peak_kb = result["procs"]["server"]["rss_mb_peak"] * 1024
                per_stream = (peak_kb - idle_kb) / streams
                print(
                    f"RSS idle {idle_kb / 1024:.1f} MB, peak at {streams} streams "
                    f"{peak_kb / 1024:.1f} MB: {per_stream:.1f} KB per stream (goal <= 20)"
                )
        finally:
            bench.stop()


if __name__ == "__main__":
    main()
