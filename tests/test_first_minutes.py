"""What a newcomer meets in the first minutes, through the real ``streamrag`` command: the
progress of an ingest, files named when they are ignored or fail, no empty knowledge base
after an ingest where everything failed, readable help, whole document ids, what to do after
the demo."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import httpx
from test_cli import STREAMRAG, run

from streamrag.cli import _next_steps

from conftest import free_port


def mixed_folder(path: Path) -> Path:
    path.mkdir()
    (path / "policy.md").write_text("# 退货政策\n\n七天内可以无理由退货。\n", encoding="utf-8")
    (path / "ship.txt").write_text("Orders over 99 yuan ship for free.", encoding="utf-8")
    (path / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")  # pypdf warns about it
    (path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return path


def test_ingest_names_what_it_ignores_and_what_fails_and_shows_honest_progress(
    tmp_path: Path,
) -> None:
    result = run(tmp_path / "home", "ingest", str(mixed_folder(tmp_path / "docs")), check=False)
    assert result.returncode == 1  # a file failed
    err = result.stderr
    assert re.search(r"ignored .*photo\.png \(not a supported type\)", err)
    assert re.search(r"failed .*broken\.pdf: corrupt or unreadable PDF", err)
    assert "EOF marker" not in err and "pypdf" not in err  # the library's own warning
    files_bar = next(line for line in err.splitlines() if line.strip().startswith("files"))
    assert "3/3" in files_bar  # the files read, the ignored one not counted
    rates = [float(rate) for rate in re.findall(r"([\d.]+) (?:files|chunks)/s", err)]
    assert all(rate < 10_000 for rate in rates), rates  # an average, not a burst
    assert "2 ingested" in result.stdout and "1 ignored" in result.stdout


def test_an_ingest_where_every_file_failed_creates_no_knowledge_base(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.4 broken")
    result = run(home, "ingest", str(bad), "--kb", "nothing", check=False)
    assert result.returncode == 1
    assert "nothing was ingested: knowledge base 'nothing' was not created" in result.stderr
    assert json.loads(run(home, "kb", "list", "--json").stdout) == []
    # an existing knowledge base is kept however its ingest goes
    good = tmp_path / "good.txt"
    good.write_text("Returns within seven days.", encoding="utf-8")
    run(home, "ingest", str(good), "--kb", "kept")
    run(home, "ingest", str(bad), "--kb", "kept", check=False)
    assert [kb["name"] for kb in json.loads(run(home, "kb", "list", "--json").stdout)] == ["kept"]


def test_help_texts_and_document_ids_are_whole(tmp_path: Path) -> None:
    help_text = run(tmp_path / "home", "ingest", "--help").stdout
    assert "STREAMRAG_KB" in help_text and not re.search(r"\w \.\s", help_text)
    root_help = run(tmp_path / "home", "--help").stdout
    assert "STREAMRAG_HOME" in root_help and "Data directory (env" in root_help

    home = tmp_path / "home"
    corpus = tmp_path / "faq.jsonl"
    doc_id = "customer-service-faq-returns-and-exchanges-" + "x" * 40
    corpus.write_text(json.dumps({"id": doc_id, "text": "七天内可以退货。"}) + "\n")
    run(home, "ingest", str(corpus), "--kb", "faq")
    table = run(home, "kb", "docs", "--kb", "faq").stdout
    assert "…" not in table
    cells = [line.split("│")[-2].strip() for line in table.splitlines() if line.count("│") > 2]
    assert "".join(cells) == doc_id  # folded over lines where it must, never cut


def test_the_demo_says_what_to_do_next() -> None:
    """(The whole demo, then the page, is tests/test_web.py's first-minutes test.)"""
    text = _next_steps("demo")
    assert "streamrag serve\n" in text and "http://127.0.0.1:8000" in text and "'demo'" in text
    assert "streamrag\\[quality]" in text  # escaped: rich would eat the [quality]
    assert "STREAMRAG_LLM_BASE_URL" in text and "11434" in text and "deepseek" in text
    assert "streamrag serve --kb mine" in _next_steps("mine")


def test_serve_takes_the_knowledge_base_to_open_on(tmp_path: Path) -> None:
    port = free_port()
    command = [*STREAMRAG, "--home", str(tmp_path / "home"), "serve", "--port", str(port)]
    server = subprocess.Popen([*command, "--kb", "客服"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/v1/info", timeout=5).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(30)
    assert info["default_kb"] == "客服"
