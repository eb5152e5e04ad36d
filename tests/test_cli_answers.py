"""``streamrag ask``, ``chat`` and ``eval answers`` as real processes, against the local mock
OpenAI-compatible server (chat and embeddings) from tests/mockllm.py."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streamrag.sample import DOCS

STREAMRAG = [sys.executable, "-m", "streamrag"]


@pytest.fixture
def env(mock_llm: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> dict[str, str]:
    base, _ = mock_llm
    env = {
        **os.environ,
        "COLUMNS": "200",
        "STREAMRAG_HOME": str(tmp_path / "home"),
        "STREAMRAG_LLM_BASE_URL": base,
        "STREAMRAG_EMBED_BASE_URL": base,
        "STREAMRAG_EMBED_MODEL": "mock-embed",
        "STREAMRAG_CONDENSE": "rules",
    }
    ingest = subprocess.run(
        [*STREAMRAG, "ingest", str(DOCS), "--kb", "shop"], env=env, capture_output=True, text=True
    )
    assert ingest.returncode == 0, ingest.stderr
    return env


def runs(env: dict[str, str]) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(Path(env["STREAMRAG_HOME"]) / "history.sqlite") as db:
        return db.execute(
            "SELECT session_id, question, finish_reason, answer FROM runs ORDER BY seq"
        ).fetchall()


def test_ask_streams_the_answer_then_the_numbered_sources(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = subprocess.run(
        [*STREAMRAG, "ask", "退货要几天？", "--kb", "shop", "--session", "s1"],
        env={**env, "COLUMNS": "40"},  # narrow, and no terminal: a source line stays whole
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answer, _, sources = result.stdout.partition("来源")
    assert answer.strip().startswith("the quick brown fox")
    legend, *lines = [line for line in sources.splitlines() if line.strip()]
    assert legend.strip() == "● 回答中引用，? 引用了但来源中未找到，≈ 未引用但来源支持，○ 未引用"
    assert [line.split("]")[0].split("[")[1] for line in lines] == ["1", "2", "3", "4", "5"]
    assert all(line.startswith((" ● [", " ○ [")) for line in lines)
    # short sources, not the absolute path of the installed package's sample folder
    assert "docs/returns-policy.md" in sources and str(DOCS) not in sources
    assert "finish stop" in result.stderr and "first token" in result.stderr
    [(session, question, finish, recorded)] = runs(env)
    assert (session, question, finish) == ("s1", "退货要几天？", "stop")
    assert recorded.strip() == answer.strip()


def test_ask_json_prints_one_event_per_line(env: dict[str, str]) -> None:
    result = subprocess.run(
        [*STREAMRAG, "ask", "How long is the warranty?", "--kb", "shop", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]
    types = [event["type"] for event in events]
    assert types[0] == "run.started" and types[-1] == "done"
    assert types.index("sources") < types.index("token")
    assert [event["seq"] for event in events] == list(range(len(events)))
    tokens = "".join(event["text"] for event in events if event["type"] == "token")
    assert events[-1]["answer"] == tokens and events[-1]["finish_reason"] == "stop"


def test_ask_names_a_missing_knowledge_base(env: dict[str, str]) -> None:
    result = subprocess.run(
        [*STREAMRAG, "ask", "x", "--kb", "nope"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 1 and "no knowledge base named 'nope'" in result.stderr


def test_chat_keeps_the_session_and_ctrl_c_stops_only_the_answer(env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [*STREAMRAG, "chat", "--kb", "shop", "--session", "c1"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert process.stdin is not None and process.stdout is not None
    seen: list[str] = []
    threading.Thread(
        target=lambda: seen.extend(iter(lambda: process.stdout.read(1), "")), daemon=True
    ).start()

    def wait_for(text: str, start: int = 0, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = "".join(seen).find(text, start)
            if found >= 0:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{text!r} never came; got {''.join(seen)!r}")

    process.stdin.write("退货要几天？\n")
    process.stdin.flush()
    first = wait_for("the quick")
    process.send_signal(signal.SIGINT)  # mid-answer: stops it, not the REPL
    time.sleep(0.5)
    process.stdin.write("要发票吗？\n/exit\n")
    process.stdin.flush()
    wait_for("来源", first)
    assert process.wait(timeout=60) == 0
    assert "stopped" in process.stderr.read()
    [(s1, q1, f1, a1), (s2, q2, f2, _)] = runs(env)
    assert (s1, q1, f1) == ("c1", "退货要几天？", "cancelled") and a1.startswith(" the quick")
    assert (s2, q2, f2) == ("c1", "要发票吗？", "stop")
    with sqlite3.connect(Path(env["STREAMRAG_HOME"]) / "history.sqlite") as db:
        [standalone] = db.execute("SELECT standalone_question FROM runs WHERE seq = 2").fetchone()
    assert standalone == "退货要几天？ 要发票吗？", "the follow-up was condensed with the history"


def test_eval_answers_scores_the_answers(env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "set"
    data.mkdir()
    (data / "corpus.jsonl").write_text(
        json.dumps({"id": "p1", "title": "fox", "text": "The quick brown fox jumps."}) + "\n"
    )
    queries = [
        {"question": "What jumps?", "answers": ["fox"], "answer_groups": [["fox"]],
         "gold_ids": ["p1"]},
        {"question": "What sleeps?", "answers": ["cat"], "answer_groups": [["cat", "kitten"]],
         "gold_ids": ["p1"]},
    ]  # fmt: skip
    (data / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    result = subprocess.run(
        [*STREAMRAG, "eval", "answers", "--data", str(data), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["questions"] == 2 and report["answer_hit_rate"] == 0.5
    assert [r["correct"] for r in report["results"]] == [True, False]
    assert report["ttft_p50_ms"] > 0 and report["tokens_per_s_p50"] > 0
    assert report["finish_reasons"] == {"stop": 2}
    assert report["prompt_tokens_p50"] == 10  # what the mock reports
    table = subprocess.run(  # with its progress bar
        [*STREAMRAG, "eval", "answers", "--data", str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 0, table.stderr
    assert "answer_hit_rate" in table.stdout and "0.5" in table.stdout


def test_a_reader_that_stops_early_stops_the_answer(env: dict[str, str]) -> None:
    """`streamrag ask --json | head -3`: the closed pipe cancels the run and the process ends."""
    process = subprocess.Popen(
        [*STREAMRAG, "ask", "退货要几天？", "--kb", "shop", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    first = [process.stdout.readline() for _ in range(3)]
    process.stdout.close()
    process.wait(timeout=30)
    assert json.loads(first[0])["type"] == "run.started"
    [(_, _, finish, _)] = runs(env)
    assert finish == "cancelled"


def test_ask_shows_the_moderated_answer_and_says_why_it_stopped(
    env: dict[str, str], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nclass = "animals"\nwords = ["brown fox"]\naction = "mask"\n'
        '[[rule]]\nclass = "rude"\nwords = ["lazy dog"]\naction = "block"\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [*STREAMRAG, "ask", "退货要几天？", "--kb", "shop"],
        env={**env, "STREAMRAG_MODERATION_RULES": str(rules)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answer = result.stdout.partition("来源")[0]
    assert answer.strip() == "the quick ＊＊＊＊＊＊＊＊＊ jumps over the"
    assert "stopped by moderation (rule 'rude', output)" in result.stderr
    assert "finish moderated" in result.stderr and "1 masked" in result.stderr
