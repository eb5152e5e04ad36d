"""The ``streamrag`` command run as a real process, on the fast bundled model (use-m3)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

STREAMRAG = [sys.executable, "-m", "streamrag"]


def run(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*STREAMRAG, "--home", str(home), "--embed-model", "use-m3", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def make_corpus(path: Path, count: int) -> Path:
    topics = ["退货", "保修", "配送", "积分", "发票", "shipping", "warranty", "refund"]
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            topic = topics[i % len(topics)]
            text = f"第{i}号说明：关于{topic}的规定编号{i}。Rule {i} about {topic} applies here."
            out.write(json.dumps({"id": f"doc-{i:05d}", "title": topic, "text": text}) + "\n")
    return path


def test_ingest_and_kb_tune_choose_the_fusion_and_kb_list_shows_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    corpus = make_corpus(tmp_path / "corpus.jsonl", 120)
    ingested = run(home, "ingest", str(corpus), "--kb", "shop").stdout
    assert "fusion: " in ingested and "pseudo-queries" in ingested
    tuning = json.loads(run(home, "kb", "tune", "shop", "--json").stdout)
    assert tuning["queries"] >= 50 and tuning["chunks"] == 120
    assert set(tuning["scores"]) >= {"adaptive", "rrf", "weighted (vector weight 0.5)"}
    listed = json.loads(run(home, "kb", "list", "--json").stdout)[0]["fusion"]
    assert f"on {tuning['queries']} pseudo-queries" in listed
    assert listed.startswith(tuning["fusion"]["method"])
    shown = run(home, "kb", "tune", "shop").stdout
    assert shown.startswith("fusion: ") and "  rrf" in shown
    missing = run(home, "kb", "tune", "nope", check=False)
    assert missing.returncode == 1 and "no knowledge base named 'nope'" in missing.stderr


def test_ingest_search_and_kb_commands(tmp_path: Path) -> None:
    home = tmp_path / "home"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "policy.md").write_text(
        "# 退货政策\n\n自签收之日起七天内可以无理由退货。\n", encoding="utf-8"
    )
    (docs / "ship.txt").write_text("Orders over 99 yuan ship for free.", encoding="utf-8")
    (docs / "empty.txt").write_text("", encoding="utf-8")

    failed = run(home, "ingest", str(docs), "--kb", "shop", check=False)
    assert failed.returncode == 1, "a failed file makes the exit status say so"
    assert "empty.txt: empty file" in failed.stderr
    assert "2 ingested" in failed.stdout and "1 failed" in failed.stdout

    (docs / "empty.txt").unlink()
    again = run(home, "ingest", str(docs), "--kb", "shop", "--json")
    report = json.loads(again.stdout)
    assert report["ingested"] == [] and len(report["unchanged"]) == 2

    hits = json.loads(run(home, "search", "可以退货吗", "--kb", "shop", "--json").stdout)
    assert hits[0]["source"].endswith("policy.md")
    assert hits[0]["location"] == "退货政策"
    assert set(hits[0]) >= {"rank", "score", "chunk_id", "title", "location", "text"}
    text = run(home, "search", "free shipping", "--kb", "shop", "-k", "1", "--mode", "bm25").stdout
    assert "ship.txt" in text and "99 yuan" in text

    listing = json.loads(run(home, "kb", "list", "--json").stdout)
    assert [(kb["name"], kb["documents"], kb["embed_model"]) for kb in listing] == [
        ("shop", 2, "use-m3")
    ]
    docs_listing = json.loads(run(home, "kb", "docs", "--kb", "shop", "--json").stdout)
    assert sorted(Path(d["source"]).name for d in docs_listing) == ["policy.md", "ship.txt"]

    assert (
        "removed 1 document" in run(home, "kb", "rm", str(docs / "ship.txt"), "--kb", "shop").stdout
    )
    missing = run(home, "kb", "rm", "nope", "--kb", "shop", check=False)
    assert missing.returncode == 1 and "no document 'nope'" in missing.stderr

    assert "dropped" in run(home, "kb", "drop", "shop").stdout
    assert json.loads(run(home, "kb", "list", "--json").stdout) == []
    gone = run(home, "search", "x", "--kb", "shop", check=False)
    assert gone.returncode == 1 and "no knowledge base named 'shop'" in gone.stderr


def test_bad_arguments_give_clear_errors(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad_mode = run(home, "search", "x", "--mode", "fuzzy", check=False)
    assert bad_mode.returncode == 2 and "hybrid, vector, bm25" in bad_mode.stderr
    bad_name = run(home, "ingest", str(tmp_path), "--kb", "../escape", check=False)
    assert bad_name.returncode == 1 and "invalid knowledge base name" in bad_name.stderr
    bad_size = run(
        home, "ingest", str(tmp_path), "--chunk-size", "100", "--chunk-overlap", "100", check=False
    )
    assert bad_size.returncode == 1 and "chunk_overlap (100) must be smaller" in bad_size.stderr


def _consistent(db_path: Path) -> tuple[int, int]:
    """Check the store's invariants; return (documents, chunks). The reads share one
    transaction, so an ingest writing meanwhile shows them one snapshot."""
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        db.execute("BEGIN")  # a read transaction: its first read fixes the snapshot (WAL)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        documents = db.execute("SELECT count(*) FROM documents").fetchone()[0]
        chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        assert (
            db.execute("SELECT coalesce(sum(n_chunks), 0) FROM documents").fetchone()[0] == chunks
        )
        assert db.execute("SELECT count(*) FROM chunks_fts").fetchone()[0] == chunks
        orphans = db.execute(
            "SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT doc_id FROM documents)"
        ).fetchone()[0]
        assert orphans == 0
        assert db.execute("SELECT DISTINCT length(embedding) FROM chunks").fetchall() in (
            [],
            [(512 * 4,)],
        )
        return documents, chunks
    finally:
        db.close()


def test_killed_ingest_leaves_a_consistent_store_and_the_next_run_finishes(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    corpus = make_corpus(tmp_path / "corpus.jsonl", 2500)
    db_path = home / "kb" / "default.sqlite"
    process = subprocess.Popen(
        [*STREAMRAG, "--home", str(home), "--embed-model", "use-m3", "ingest", str(corpus)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        committed = 0
        while time.monotonic() < deadline and committed < 200:
            time.sleep(0.05)
            if db_path.exists():
                try:
                    committed = _consistent(db_path)[0]
                except sqlite3.OperationalError:
                    continue
        assert committed >= 200, "the ingest did not commit anything in time"

        # A search in another process works while the ingest is writing.
        searched = run(home, "search", "保修", "--json", "-k", "3")
        assert len(json.loads(searched.stdout)) == 3
        assert process.poll() is None, "the ingest finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    documents, _ = _consistent(db_path)
    assert 200 <= documents < 2500

    finish = json.loads(run(home, "ingest", str(corpus), "--json").stdout)
    assert finish["failed"] == []
    assert _consistent(db_path)[0] == 2500
    assert finish["chunks"] == 2500 - documents, "committed documents were not embedded again"

    clean_home = tmp_path / "clean"
    run(clean_home, "ingest", str(corpus))
    ids = "SELECT chunk_id, text FROM chunks ORDER BY chunk_id"
    resumed = sqlite3.connect(db_path).execute(ids).fetchall()
    clean = sqlite3.connect(clean_home / "kb" / "default.sqlite").execute(ids).fetchall()
    assert resumed == clean


@pytest.mark.parametrize("flag", ["--help"])
def test_help_lists_the_commands(flag: str) -> None:
    out = subprocess.run([*STREAMRAG, flag], capture_output=True, text=True, check=True).stdout
    for command in ("ingest", "search", "kb", "eval"):
        assert command in out
