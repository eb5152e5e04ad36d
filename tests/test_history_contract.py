"""The contract of Memory, RunLog and RunEventLog, on the embedded backend and on
PostgreSQL (a real server)."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from streamrag.answer.events import CitedSource, Done, Token
from streamrag.backends import History, open_backend
from streamrag.config import Settings
from streamrag.history.base import RunRecord, Turn


@pytest.fixture
def history(backend_settings: Settings) -> Iterator[History]:
    backend = open_backend(backend_settings)
    yield backend.history
    backend.close()


def run(run_id: str, session_id: str = "s1", kb: str = "shop", **fields: object) -> RunRecord:
    record = RunRecord(
        run_id=run_id,
        session_id=session_id,
        kb=kb,
        question=f"question {run_id}?",
        standalone_question=f"question {run_id}?",
        retrieved=[],
        answer="",
        citations=[],
        finish_reason="running",
        timings={},
        usage={},
        model="m",
        started_at=f"2026-12-03T00:00:{len(run_id):02d}.000+00:00",
    )
    return dataclasses.replace(record, **fields)  # type: ignore[arg-type]


def ended(record: RunRecord, answer: str) -> RunRecord:
    return dataclasses.replace(
        record,
        answer=answer,
        finish_reason="stop",
        retrieved=["c1", "c2"],
        citations=[CitedSource(1, "c1", 4)],
        timings={"total_ms": 12.5},
        usage={"prompt_tokens": 3},
        error=None,
        invalid_citations=1,
    )


def test_a_run_is_recorded_when_it_begins_and_when_it_ends(history: History) -> None:
    first = run("r1")
    history.begin(first)
    assert history.get_run("r1") == first
    assert history.running() == {"r1": history.owner}
    assert history.history("s1") == []  # a run still answering is no turn yet

    history.record(ended(first, "seven days [1]"))
    assert history.get_run("r1") == ended(first, "seven days [1]")
    assert history.running() == {}
    assert history.history("s1") == [Turn("question r1?", "seven days [1]")]
    assert history.get_run("nope") is None


def test_runs_page_newest_first_and_sessions_know_their_runs(history: History) -> None:
    for i in range(5):
        record = run(f"r{i}", session_id="s1" if i % 2 == 0 else "s2", kb=f"kb{i % 3}")
        history.begin(record)
        history.record(ended(record, f"answer {i}"))
    assert [r.run_id for r in history.runs(limit=3)] == ["r2", "r3", "r4"]  # oldest first
    assert [r.run_id for r in history.runs("s1")] == ["r0", "r2", "r4"]
    assert [r.run_id for r in history.runs(limit=2, before="r3")] == ["r1", "r2"]
    assert [t.answer for t in history.history("s1", limit=2)] == ["answer 2", "answer 4"]

    sessions = {s.session_id: s for s in history.sessions()}
    assert sessions["s1"].runs == 3 and sessions["s1"].kbs == ["kb0", "kb1", "kb2"]
    assert sessions["s1"].title == "question r0?" and sessions["s2"].kbs == ["kb0", "kb1"]
    history.rename_session("s2", "运费")
    assert history.session("s2").title == "运费"  # type: ignore[union-attr]
    assert history.session("nope") is None

    assert history.delete_session("s1") == 3
    assert history.session("s1") is None and history.runs("s1") == []
    assert history.events("r0") == []


def test_a_deleted_session_stays_deleted(history: History) -> None:
    record = run("r1")
    history.begin(record)
    history.append_events("r1", [Token(run_id="r1", seq=0, text="x")], "x")
    assert history.delete_session("s1") == 1
    history.record(ended(record, "late"))  # the run ends after its session was deleted
    assert history.get_run("r1") is None and history.session("s1") is None


def test_events_are_kept_in_order_once_with_the_partial_answer(history: History) -> None:
    history.begin(run("r1"))
    tokens = [Token(run_id="r1", seq=i, text=t) for i, t in enumerate(["退", "货", "七天"])]
    history.append_events("r1", tokens[:2], "退货")
    history.append_events("r1", tokens[1:], "退货七天")  # one again: kept once
    assert history.events("r1") == tokens
    assert history.events("r1", after=0) == tokens[1:]
    assert history.get_run("r1").answer == "退货七天"  # type: ignore[union-attr]

    done = Done(
        run_id="r1",
        seq=3,
        answer="退货七天",
        citations=[],
        finish_reason="stop",
        timings={},
        usage={},
    )
    history.append_events("r1", [done], "退货七天")
    assert history.events("r1", after=2) == [done]


def test_interrupting_ends_a_running_run_once(history: History) -> None:
    history.begin(run("r1"))
    assert history.interrupt("r1", "partial", "worker_lost", "the replica stopped")
    assert not history.interrupt("r1", "other", "worker_lost", "again")
    record = history.get_run("r1")
    assert record is not None and record.finish_reason == "interrupted"
    assert (record.answer, record.error) == (
        "partial",
        {"code": "worker_lost", "message": "the replica stopped"},
    )
    history.begin(run("r2"))
    history.record(ended(run("r2"), "done"))
    assert not history.interrupt("r2", "", "worker_lost", "ended already")


def test_runs_of_a_dead_process_on_this_host_are_interrupted(
    backend_settings: Settings, history: History
) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    host = socket.gethostname()
    for run_id, pid in (("r1", dead), ("r2", "1"), ("r3", dead)):  # pid 1 is alive
        other = open_backend(backend_settings)  # that process's view of the same storage
        other.history.owner = f"{host}:{pid}"
        other.history.begin(run(run_id))
        other.history.append_events(run_id, [Token(run_id=run_id, seq=0, text="half")], "half")
        other.close()
    history.record(ended(run("r3"), "whole"))  # ended before its process died
    assert history.interrupt_orphans() == ["r1"]
    record = history.get_run("r1")
    assert record is not None and (record.finish_reason, record.answer) == ("interrupted", "half")
    assert record.error is not None and record.error["code"] == "interrupted"
    assert history.running() == {"r2": f"{host}:1"}
