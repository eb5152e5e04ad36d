"""The web chat page in real headless Chromium against a real server on 127.0.0.1."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from streamrag.config import Settings, load_settings
from streamrag.sample import questions

from conftest import ScriptedLLM, serving
from web_support import ARTIFACTS, CuttableProxy, chromium, open_page

MARKDOWN_ANSWER = [
    "退货", "政策", "如下", "：\n\n", "- 七天", "内可", "无理由", "退货", "[1]", "\n",
    "- 退款", "三个", "工作日", "到账", "【2】", "\n\n", "```", "python\n", "print", "(1)\n",
    "```", "\n",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def errors() -> Iterator[list[str]]:
    """The page's script errors; a test that saw any fails."""
    seen: list[str] = []
    yield seen
    assert not [e for e in seen if "Failed to load resource" not in e], seen


def ask(page: Page, question: str) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")


def answer_text(page: Page) -> str:
    return page.locator(".turn").last.locator(".markdown").inner_text()


def finished(page: Page, reason: str = "stop", timeout: float = 30_000) -> None:
    expect(page.locator(".turn").last).to_have_attribute("data-finish", reason, timeout=timeout)


def test_the_answer_streams_in_with_source_cards_first_and_citations_that_open_them(
    server_settings: Settings, browser: Browser, errors: list[str]
) -> None:
    llm = ScriptedLLM(MARKDOWN_ANSWER, delay=0.15)
    with serving(server_settings, llm) as client:
        page = open_page(browser, str(client.base_url), errors)
        ask(page, "退货政策是什么？")
        page.wait_for_selector(".turn .source")
        cards_while_streaming = page.locator(".turn .source").count()
        assert page.locator(".turn").get_attribute("data-finish") is None, "sources came last"
        snapshots = []
        while page.locator(".turn").get_attribute("data-finish") is None:
            snapshots.append(answer_text(page))
            time.sleep(0.12)
        finished(page)
        final = answer_text(page)
        grown = [s for i, s in enumerate(snapshots) if s and (i == 0 or s != snapshots[i - 1])]
        assert len(grown) >= 4, snapshots
        assert all(len(a) <= len(b) for a, b in itertools.pairwise(grown))
        assert cards_while_streaming == page.locator(".turn .source").count() >= 2

        # Markdown: a list, a code block; markers are links, [1] and 【2】 alike.
        assert page.locator(".markdown li").count() == 2
        assert page.locator(".markdown pre code").inner_text().strip() == "print(1)"
        assert "七天内可无理由退货" in final and "[1]" not in final
        links = page.locator(".markdown a.cite")
        assert [links.nth(i).inner_text() for i in range(links.count())] == ["1", "2"]

        # Clicking a citation opens its card with the passage, document and location.
        record = client.get(f"/v1/runs/{page.locator('.turn').get_attribute('data-run-id')}")
        first = client.get(f"/v1/runs/{record.json()['run_id']}/sources").json()[1]
        links.nth(1).click()
        card = page.locator('.turn .source[data-n="2"]')
        expect(card).to_have_attribute("open", "")
        expect(card).to_have_class("source highlight")
        expect(card.locator(".passage")).to_be_visible()
        assert card.locator(".passage").inner_text().strip() == first["text"].strip()
        assert Path(first["source"]).name in card.locator(".document").inner_text()

        # Run details come from the run record.
        page.click(".run-details summary")
        details = page.locator(".run-details dl")
        expect(details).to_contain_text("Time to first token")
        assert record.json()["usage"]["completion_tokens"] == len(MARKDOWN_ANSWER)
        expect(details).to_contain_text(f"42 / {len(MARKDOWN_ANSWER)}")
        expect(page.locator(".retrieved li")).to_have_count(len(record.json()["retrieved"]))
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "web-answer-scripted.png", full_page=True)


def test_stop_button_and_escape_cancel_the_run_on_the_server(
    server_settings: Settings, browser: Browser, errors: list[str]
) -> None:
    llm = ScriptedLLM([f"词{i} " for i in range(400)], delay=0.05)
    with serving(server_settings, llm) as client:
        page = open_page(browser, str(client.base_url), errors)
        for stop in (lambda: page.click("#stop"), lambda: page.keyboard.press("Escape")):
            ask(page, "退货要几天？")
            expect(page.locator(".turn").last.locator(".markdown")).to_have_text(
                re.compile(".{20}")
            )
            stop()
            finished(page, "cancelled")
            expect(page.locator(".turn").last.locator(".notice")).to_have_text("Stopped.")
            run_id = page.locator(".turn").last.get_attribute("data-run-id")
            record = client.get(f"/v1/runs/{run_id}").json()
            assert record["finish_reason"] == "cancelled"
            assert record["answer"] and answer_text(page).startswith(record["answer"].strip()[:20])
            assert llm.produced < 400
            expect(page.locator("#send")).to_be_visible()


@pytest.mark.parametrize("failure", ["cut", "freeze"])
def test_a_connection_lost_mid_answer_resumes_without_duplicated_or_missing_text(
    server_settings: Settings, browser: Browser, errors: list[str], failure: str
) -> None:
    """Reset (the browser sees an error) or silently dead (it sees nothing, but heartbeats
    stop): either way the page resumes from its last event id."""
    tokens = [f"t{i} " for i in range(80)]
    expected = "".join(tokens).strip()
    settings = server_settings.model_copy(update={"heartbeat_s": 0.3})
    llm = ScriptedLLM(tokens, delay=0.04)
    with serving(settings, llm) as client:
        proxy = CuttableProxy(client.base_url.port)
        try:
            page = open_page(browser, proxy.url, errors)
            resumes: list[str | None] = []
            page.on(
                "request",
                lambda r: (
                    resumes.append(r.headers.get("last-event-id")) if "/events" in r.url else None
                ),
            )
            ask(page, "退货要几天？")
            expect(page.locator(".turn .markdown")).to_contain_text("t10 ")
            assert getattr(proxy, failure)() >= 1
            snapshots = []
            deadline = time.monotonic() + 30
            while page.locator(".turn").get_attribute("data-finish") is None:
                assert time.monotonic() < deadline, f"not finished: {snapshots[-1:]}"
                snapshots.append(answer_text(page).strip())
                time.sleep(0.05)
        finally:
            proxy.close()
        assert answer_text(page).strip() == expected
        run_id = page.locator(".turn").get_attribute("data-run-id")
    assert resumes  # more than one when pooled connections were dead as well
    assert all(r and r.startswith(f"{run_id}:") for r in resumes), resumes
    assert all(expected.startswith(s) for s in snapshots), "text repeated or lost on resume"
    assert any(s and s != expected for s in snapshots), "the failure came after the answer"


def test_an_error_mid_answer_is_a_readable_message(
    server_settings: Settings, browser: Browser, errors: list[str]
) -> None:
    with serving(server_settings, ScriptedLLM(["部分", "回答", "x"], fail_after=2)) as client:
        page = open_page(browser, str(client.base_url), errors)
        ask(page, "退货要几天？")
        alert = page.locator(".turn [role=alert]")
        expect(alert).to_be_visible()
        expect(alert).to_contain_text("connection reset")
        expect(alert).to_contain_text("upstream_disconnected")
        assert answer_text(page).strip() == "部分回答"
        finished(page, "error")


def test_markdown_from_the_model_cannot_run_script(
    server_settings: Settings, browser: Browser, errors: list[str]
) -> None:
    answer = [
        '<img src="x" onerror="window.__xss=1">',
        " **粗体** ",
        "<script>window.__xss=2</script>",
    ]
    with serving(server_settings, ScriptedLLM(answer)) as client:
        page = open_page(browser, str(client.base_url), errors)
        ask(page, "退货要几天？")
        finished(page)
        assert page.evaluate("window.__xss") is None
        assert page.locator(".markdown strong").inner_text() == "粗体"
        assert page.locator(".markdown script, .markdown [onerror]").count() == 0
    # Chromium reports the handler it refused while the sanitiser parsed the answer
    # (cure53/DOMPurify#107): the page's policy at work, not a page error.
    errors[:] = [e for e in errors if "Content Security Policy" not in e]


def test_sessions_come_from_the_server_and_can_be_switched_renamed_and_deleted(
    server_settings: Settings, browser: Browser, errors: list[str]
) -> None:
    llm = ScriptedLLM(["七天内可退货", "[1]", "。"])
    with serving(server_settings, llm) as client:
        page = open_page(browser, str(client.base_url), errors)
        ask(page, "退货要几天？")
        finished(page)
        ask(page, "要发票吗？")
        expect(page.locator(".turn")).to_have_count(2)
        finished(page)
        page.click("#new-chat")
        expect(page.locator(".turn")).to_have_count(0)
        ask(page, "保修多久？")
        finished(page)
        expect(page.locator(".session")).to_have_count(2)
        first_id = page.locator(".turn").last.get_attribute("data-run-id")
        sessions = client.get("/v1/sessions").json()
        assert len(sessions) == 2

        page.reload()
        page.wait_for_selector("body[data-ready]")
        older = page.locator(".session").nth(1)
        older.locator(".open").click()
        expect(page.locator(".turn")).to_have_count(2)
        expect(page.locator(".turn .question").first).to_have_text("退货要几天？")
        expect(page.locator(".turn").first.locator(".markdown")).to_contain_text("七天内可退货")
        expect(page.locator(".turn").first.locator(".source").first).to_be_visible()
        page.locator(".turn").first.locator("a.cite").click()
        expect(page.locator(".turn").first.locator('.source[data-n="1"] .passage')).to_be_visible()

        older.locator(".rename").click()
        page.fill(".rename-input", "退货咨询")
        page.press(".rename-input", "Enter")
        expect(page.locator(".session .open", has_text="退货咨询")).to_have_count(1)
        session_id = page.locator(".session", has_text="退货咨询").get_attribute("data-id")
        assert client.get(f"/v1/sessions/{session_id}").json()["title"] == "退货咨询"

        renamed = page.locator(".session", has_text="退货咨询")
        renamed.hover()
        renamed.locator(".delete").click()
        renamed.locator(".delete").click()
        expect(page.locator(".session")).to_have_count(1)
        assert client.get(f"/v1/sessions/{session_id}").status_code == 404
        expect(page.locator(".turn")).to_have_count(0)  # the open conversation was deleted
        assert first_id


def test_upload_shows_each_files_result_and_makes_it_searchable(
    server_settings: Settings, browser: Browser, errors: list[str], tmp_path: Path
) -> None:
    good = tmp_path / "独角兽保修.txt"
    good.write_text("紫色独角兽咖啡机的保修期为十二年，全国联保。", encoding="utf-8")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7 this is not really a pdf")
    unsupported = tmp_path / "tool.exe"
    unsupported.write_bytes(b"MZ")
    with serving(server_settings, ScriptedLLM(["ok"])) as client:
        page = open_page(browser, str(client.base_url), errors)
        page.click("#toggle-kb")
        before = len(client.get("/v1/kbs/shop/documents").json())
        expect(page.locator("#documents tbody tr")).to_have_count(before)
        page.set_input_files("#file-input", [str(good), str(broken), str(unsupported)])
        row = page.locator('.upload[data-name="独角兽保修.txt"]')
        expect(row).to_have_attribute("data-status", "ingested", timeout=30_000)
        expect(row.locator(".state")).to_have_text("Added")
        failed = page.locator('.upload[data-name="broken.pdf"]')
        expect(failed).to_have_attribute("data-status", "failed", timeout=30_000)
        assert len(failed.locator(".state").inner_text()) > len("Failed: ")
        rejected = page.locator('.upload[data-name="tool.exe"]')
        expect(rejected).to_have_attribute("data-status", "failed", timeout=30_000)
        expect(rejected.locator(".state")).to_contain_text("unsupported file type")

        expect(page.locator("#documents tbody tr")).to_have_count(before + 1)
        new_row = page.locator("#documents tbody tr", has_text="独角兽保修")
        assert int(new_row.locator(".chunks").inner_text()) >= 1

        page.fill("#search-input", "独角兽保修期")
        page.press("#search-input", "Enter")
        first_hit = page.locator(".hits .hit").first
        expect(first_hit).to_contain_text("紫色独角兽咖啡机的保修期为十二年")

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "web-knowledge-base.png")
        page.set_input_files("#file-input", [str(good)])  # the same file again: skipped
        expect(page.locator('.upload[data-name="独角兽保修.txt"]').first).to_have_attribute(
            "data-status", "unchanged", timeout=30_000
        )

        page.evaluate(  # files dropped on the zone go the same way
            """() => {
                const files = new DataTransfer();
                files.items.add(new File(["蓝色企鹅冰箱的保修期为五年。"], "拖放.txt"));
                const drop = new DragEvent("drop", { dataTransfer: files, cancelable: true });
                document.querySelector("#drop-zone").dispatchEvent(drop);
            }"""
        )
        dropped = page.locator('.upload[data-name="拖放.txt"]')
        expect(dropped).to_have_attribute("data-status", "ingested", timeout=30_000)
        expect(page.locator("#documents tbody tr")).to_have_count(before + 2)
        page.locator("#documents tbody tr", has_text="拖放").locator(".delete").dblclick()

        new_row.locator(".delete").click()
        new_row.locator(".delete").click()
        expect(page.locator("#documents tbody tr")).to_have_count(before)
        hits = client.post("/v1/kbs/shop/search", json={"query": "独角兽保修期"}).json()["hits"]
        assert all("独角兽" not in hit["text"] for hit in hits)


def test_interface_language_follows_the_browser_and_keys_work(
    server_settings: Settings, browser: Browser, errors: list[str]
) -> None:
    with serving(server_settings, ScriptedLLM(["好的"])) as client:
        page = open_page(browser, str(client.base_url), errors, locale="zh-CN")
        expect(page.locator("#send")).to_have_text("发送")
        expect(page.locator("#new-chat")).to_have_text("新对话")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        page.fill("#question", "第一行")
        page.press("#question", "Shift+Enter")
        page.type("#question", "第二行")
        expect(page.locator(".turn")).to_have_count(0)
        assert page.input_value("#question") == "第一行\n第二行"
        page.press("#question", "Enter")
        expect(page.locator(".turn .question")).to_have_text("第一行\n第二行")
        finished(page)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "web-chinese.png")
        english = open_page(browser, str(client.base_url), errors, locale="en-US")
        expect(english.locator("#send")).to_have_text("Send")


def test_with_api_keys_the_page_asks_for_one(server_settings: Settings, browser: Browser) -> None:
    settings = server_settings.model_copy(update={"api_keys": ["sekret"]})
    with serving(settings, ScriptedLLM(["好的"])) as client:
        assert client.get("/").status_code == 200
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/v1/info").status_code == 401
        context = browser.new_context(locale="en-US")
        page = context.new_page()
        page.goto(str(client.base_url))
        expect(page.locator("#key-dialog")).to_be_visible()
        page.fill("#key-input", "sekret")
        page.click("#key-form button")
        page.wait_for_selector("body[data-ready]")
        ask(page, "退货要几天？")
        finished(page)
        expect(page.locator(".turn .markdown")).to_have_text("好的")


def test_the_page_and_its_modules_are_served_with_a_strict_policy(
    server_settings: Settings,
) -> None:
    with serving(server_settings, ScriptedLLM(["ok"])) as client:
        page = client.get("/")
        module = client.get("/static/vendor/marked.esm.js")
        missing = client.get("/static/nope.js")
        assert client.get("/openapi.json").json()["paths"].get("/") is None
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert module.headers["content-type"].split(";")[0] in (
        "text/javascript",
        "application/javascript",
    )
    assert missing.status_code == 404


def test_the_bundled_model_answers_in_the_page(
    sample_kb, local_llm, browser: Browser, errors: list[str]
) -> None:
    """The real model behind the page; the screenshot is kept as a test artifact."""
    settings = sample_kb.settings.model_copy(
        update={"kb": "sample", "answer_top_k": 3, "max_tokens": 80, "temperature": 0.0}
    )
    with serving(settings, local_llm) as client:
        page = open_page(browser, str(client.base_url), errors)
        ask(page, "How long is the warranty for a refrigerator?")
        page.wait_for_selector(".turn .source")
        finished(page, timeout=180_000)
        assert answer_text(page).strip()
        assert page.locator(".turn .source").count() >= 1
        cite = page.locator(".markdown a.cite:not(.invalid)")
        if cite.count():
            cite.first.click()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "web-answer-bundled-model.png", full_page=True)
        record = httpx.get(f"{client.base_url}/v1/runs").json()[0]  # the newest
        assert record["finish_reason"] in ("stop", "length") and record["timings"]["ttft_ms"] > 0


def test_a_plain_event_source_gets_one_answer_and_stops(
    server_settings: Settings, browser: Browser, errors: list[str]
) -> None:
    """Browser code usually leaves an EventSource open: after ``done`` the server closes, the
    browser reconnects with Last-Event-ID and must be told to stop, not answered again."""
    with serving(server_settings, ScriptedLLM(["七天", "内"])) as client:
        page = open_page(browser, str(client.base_url), errors)
        page.evaluate(
            """() => {
              window.received = [];
              const source = new EventSource("/v1/chat/stream?q=" + encodeURIComponent("退货"));
              window.source = source;
              source.addEventListener("done", (event) => window.received.push(event.data));
              source.addEventListener("token", (event) => window.received.push(event.data));
            }"""
        )
        page.wait_for_function("() => window.received.length >= 3")
        page.wait_for_function("() => window.source.readyState === 2", timeout=15_000)  # CLOSED
        time.sleep(1)
        assert len(page.evaluate("window.received")) == 3, "the answer came once"
        assert len(client.get("/v1/runs").json()) == 1, "the reconnect started no run"
        assert len(client.get("/v1/sessions").json()) == 1


def test_after_the_demo_the_page_opens_on_its_knowledge_base_and_answers(
    tmp_path: Path, local_llm, browser: Browser, errors: list[str]
) -> None:
    """`streamrag demo`, then the page: no choice to make before a sample question is
    answered (the configured knowledge base, 'default', does not exist: the page opens on
    the one that does)."""
    home = tmp_path / "home"
    demo = subprocess.run(
        [sys.executable, "-m", "streamrag", "--home", str(home), "demo", "--limit", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr
    assert "Next:" in demo.stdout and "streamrag serve" in demo.stdout
    assert "knowledge base 'demo'" in demo.stdout and "qwen2.5-coder-1.5b" in demo.stdout
    settings = load_settings(home=home).model_copy(update={"max_tokens": 60})
    with serving(settings, local_llm) as client:
        page = open_page(browser, str(client.base_url), errors, locale="zh-CN")
        expect(page.locator("#kb-select")).to_have_value("demo")
        ask(page, questions()[0].question)
        finished(page, timeout=180_000)
        assert answer_text(page).strip()
        expect(page.locator(".turn .error")).to_be_hidden()
        expect(page.locator(".turn .source").first).to_be_visible()


def test_a_new_knowledge_base_by_name_and_errors_in_the_pages_language(
    server_settings: Settings, browser: Browser, errors: list[str]
) -> None:
    with serving(server_settings, ScriptedLLM(["好的"])) as client:
        page = open_page(browser, str(client.base_url), errors, locale="zh-CN")
        expect(page.locator("#kb-select")).to_have_value("shop")  # the configured one
        page.once("dialog", lambda dialog: dialog.accept("客服知识库"))
        page.select_option("#kb-select", "")
        expect(page.locator("#kb-select")).to_have_value("客服知识库")
        ask(page, "退货要几天？")
        error = page.locator(".turn .error")
        expect(error).to_contain_text("这个知识库还没有文档")
        assert "streamrag ingest" not in error.inner_text()  # no command-line hint in the page

        page.click("#toggle-kb")
        page.set_input_files(
            "#file-input",
            files=[
                {
                    "name": "退货.txt",
                    "mimeType": "text/plain",
                    "buffer": "七天内可以退货。".encode(),
                }
            ],
        )
        expect(page.locator(".upload")).to_have_attribute("data-status", "ingested")
        expect(page.locator("#documents tbody tr .size")).to_have_text("8 字")
        assert "客服知识库" in [kb["name"] for kb in client.get("/v1/kbs").json()]


def test_an_upload_where_every_file_failed_creates_no_knowledge_base(
    server_settings: Settings,
) -> None:
    with serving(server_settings, ScriptedLLM(["x"])) as client:
        response = client.post(
            "/v1/kbs/broken/documents",
            params={"stream": "false"},
            files={"files": ("bad.pdf", b"%PDF-1.4 broken")},
        )
        kbs = [kb["name"] for kb in client.get("/v1/kbs").json()]
        models = [model["id"] for model in client.get("/v1/models").json()["data"]]
    assert response.status_code == 200 and response.json()["failed"][0]["path"] == "bad.pdf"
    assert "broken" not in kbs and "broken" not in models
    assert not (server_settings.home / "uploads" / "broken").exists()


@pytest.mark.parametrize("width", [390, 1280])
def test_the_page_works_on_a_phone_sized_screen(
    width: int, server_settings: Settings, browser: Browser, errors: list[str]
) -> None:
    """At 390 px the conversations are behind a ☰ menu; nothing is wider than the screen."""
    with serving(server_settings, ScriptedLLM(["七天内", "可以退货[1]。"])) as client:
        client.post("/v1/chat", json={"question": "退货要几天？"})
        context = browser.new_context(locale="zh-CN", viewport={"width": width, "height": 844})
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(str(client.base_url))
        page.wait_for_selector("body[data-ready]")
        menu, sidebar = page.locator("#toggle-sidebar"), page.locator("#sidebar")
        ask(page, "可以退货吗？")
        finished(page)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"web-{width}px.png")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        if width > 900:
            expect(menu).to_be_hidden()
            expect(sidebar).to_be_visible()
            return
        expect(sidebar).to_be_hidden()
        expect(page.locator("#send")).to_be_visible()
        menu.click()
        expect(sidebar).to_be_visible()
        expect(page.locator(".session")).to_have_count(2)
        page.wait_for_function(  # slid in
            "() => getComputedStyle(document.querySelector('#sidebar')).transform === 'none'"
        )
        page.screenshot(path=ARTIFACTS / f"web-{width}px-conversations.png")
        page.locator("#new-chat").click()
        expect(sidebar).to_be_hidden()
        expect(page.locator(".turn")).to_have_count(0)
        menu.click()
        page.locator(".session .open").last.click()  # the older conversation
        expect(sidebar).to_be_hidden()
        expect(page.locator(".turn .question")).to_have_text("退货要几天？")


class QueuedLLM(ScriptedLLM):
    """Says two answers come first, waits, then answers."""

    async def stream(self, messages, *, max_tokens, temperature):  # type: ignore[no-untyped-def]
        import asyncio

        from streamrag.llm.base import LLMDelta

        for ahead in (2, 1, 0):
            yield LLMDelta(queued=ahead)
            await asyncio.sleep(1.0 if ahead else 0)
        async for delta in super().stream(messages, max_tokens=max_tokens, temperature=temperature):
            yield delta


def test_a_question_waiting_for_the_model_shows_its_place(
    server_settings: Settings, browser: Browser, errors: list[str]
) -> None:
    with serving(server_settings, QueuedLLM(["七天", "内。"])) as client:
        page = open_page(browser, str(client.base_url), errors)
        ask(page, "退货政策是什么？")
        status = page.locator(".turn .status")
        expect(status).to_contain_text("2", timeout=10_000)
        expect(status).to_contain_text("1", timeout=10_000)
        finished(page)
        assert answer_text(page) == "七天内。"


def test_unsupported_and_inferred_citations_look_different(
    server_settings: Settings, browser: Browser, errors: list[str]
) -> None:
    """A marker whose source does not hold its sentence is flagged; a sentence without a
    marker that one source holds gets the page's inferred marker, live and read back."""
    llm = ScriptedLLM([])
    with serving(server_settings, llm) as client:
        question = "退款多久到账？"
        search = {"query": question, "k": 1}
        [top] = client.post("/v1/kbs/shop/search", json=search).json()["hits"]
        fact = top["text"].split("\n")[-1].split("。")[0]  # a sentence of the first source
        llm.deltas = [fact[:6], fact[6:], "。[1]", "火星上可以", "种土豆[1]。", fact, "。"]
        page = open_page(browser, str(client.base_url), errors)
        ask(page, question)
        finished(page)
        links = page.locator(".turn .markdown a.cite")
        assert links.count() == 3
        assert "unsupported" not in (links.nth(0).get_attribute("class") or "")
        assert "unsupported" in (links.nth(1).get_attribute("class") or "")
        assert "inferred" in (links.nth(2).get_attribute("class") or "")
        assert links.nth(2).get_attribute("data-n") == "1"

        page.reload()  # the conversation read back from the run record
        page.wait_for_selector("body[data-ready]")
        page.locator(".session").first.locator(".open").click()
        expect(page.locator(".turn .markdown a.cite.inferred")).to_have_count(1)
        expect(page.locator(".turn .markdown a.cite.unsupported")).to_have_count(1)


def test_a_moderated_answer_shows_masks_and_a_notice_and_never_the_words(
    server_settings: Settings, browser: Browser, errors: list[str], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nclass = "pii"\npii = ["cn_mobile"]\naction = "mask"\n'
        '[[rule]]\nclass = "secret"\nwords = ["内部代号"]\naction = "block"\n',
        encoding="utf-8",
    )
    llm = ScriptedLLM(["请致电 138", "0013", "8000。", "另外，内部", "代号", "是 X。"])
    settings = server_settings.model_copy(update={"moderation_rules": rules})
    with serving(settings, llm) as client:
        page = open_page(browser, str(client.base_url), errors)
        shown: list[str] = []
        page.expose_function("seen", lambda text: shown.append(text))
        page.evaluate(
            "new MutationObserver(() => seen(document.querySelector('.turn:last-child')"
            "?.innerText ?? '')).observe(document.body, {subtree: true, childList: true,"
            " characterData: true})"
        )
        ask(page, "怎么联系客服？")
        finished(page, "moderated")
        assert answer_text(page).startswith("请致电 ＊＊＊＊＊＊＊＊＊＊＊。另外，")
        expect(page.locator(".turn").last).to_contain_text("Content moderation stopped")
    assert shown and not any("13800138000" in s or "内部代号" in s or "代号" in s for s in shown)
