"""What the web page costs the browser per streamed token.

Serves streamrag (an empty knowledge base, a fake model emitting Markdown at a fixed pace) on
127.0.0.1, asks through the page in headless Chromium (Debian's /usr/bin/chromium, Playwright)
and reads Chromium's own counters (CDP Performance.getMetrics) around each answer: main-thread
task, script and layout time per token, and how long after the server's last token the page
showed it. Also prints the weight of the page's files.

    python bench/web_render.py [--tokens 500] [--interval-ms 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from streamrag import KnowledgeBase, load_settings
from streamrag.llm.base import ChatMessage, LLMDelta
from streamrag.server.app import create_app
from streamrag.web import STATIC

PIECES = [
    "退货", "政策", "如下", "：", "\n\n", "- 七天", "内可", "退货", "[1]", "\n", "Refunds ",
    "take ", "three ", "days", ".", "\n\n", "```", "python\n", "print(1)\n", "```", "\n\n",
]  # fmt: skip


class PacedLLM:
    """Emits ``tokens`` Markdown pieces, one every ``interval`` seconds."""

    name = "paced"

    def __init__(self, tokens: int, interval: float) -> None:
        self.tokens = tokens
        self.interval = interval
        self.last_token_at = 0.0

    async def aclose(self) -> None:
        pass

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[LLMDelta]:
        for i in range(self.tokens):
            await asyncio.sleep(self.interval)
            yield LLMDelta(text=PIECES[i % len(PIECES)])
        self.last_token_at = time.time()
        yield LLMDelta(finish_reason="stop")
        yield LLMDelta(prompt_tokens=100, completion_tokens=self.tokens)


def metrics(cdp) -> dict[str, float]:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings(home=Path(tempfile.mkdtemp(prefix="streamrag-bench-")), kb="empty")
    KnowledgeBase("empty", settings=settings).close()
    llm = PacedLLM(args.tokens, args.interval_ms / 1000)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, llm=llm), host="127.0.0.1", port=0, log_level="error")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    weight = sum(
        f.stat().st_size for f in STATIC.rglob("*") if f.suffix in (".js", ".mjs", ".css", ".html")
    )
    rows = {"task": [], "script": [], "layout": [], "lag": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("body[data-ready]")
        for run in range(args.runs):
            before = metrics(cdp)
            page.fill("#question", f"问题 {run}")
            page.press("#question", "Enter")
            page.locator(".turn").nth(run).and_(page.locator("[data-finish]")).wait_for(
                timeout=600_000
            )
            shown_at = time.time()
            after = metrics(cdp)
            rows["task"].append(
                (after["TaskDuration"] - before["TaskDuration"]) * 1000 / args.tokens
            )
            rows["script"].append(
                (after["ScriptDuration"] - before["ScriptDuration"]) * 1000 / args.tokens
            )
            rows["layout"].append(
                (
                    after["LayoutDuration"]
                    + after["RecalcStyleDuration"]
                    - before["LayoutDuration"]
                    - before["RecalcStyleDuration"]
                )
                * 1000
                / args.tokens
            )
            rows["lag"].append((shown_at - llm.last_token_at) * 1000)
        browser.close()
    server.should_exit = True
    median = {name: statistics.median(values) for name, values in rows.items()}
    print(f"page files: {weight / 1024:.0f} KiB (JS, CSS, HTML; no build step, not minified)")
    print(
        f"{args.tokens} tokens every {args.interval_ms:g} ms, {args.runs} answers (median):\n"
        f"  browser main-thread task time per token: {median['task']:.3f} ms "
        f"({median['task'] / args.interval_ms:.1%} of the token interval)\n"
        f"  of which script {median['script']:.3f} ms, style + layout {median['layout']:.3f} ms\n"
        f"  last token shown {median['lag']:.0f} ms after the model produced it "
        f"(includes the Playwright poll)"
    )


if __name__ == "__main__":
    main()
