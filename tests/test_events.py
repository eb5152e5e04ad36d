import json

from streamrag.answer.events import CitedSource, Done, Source, Sources, Token


def test_every_event_has_type_run_id_seq_and_a_stable_json_form() -> None:
    token = Token(run_id="r1", seq=3, text="退货")
    assert token.to_dict() == {"type": "token", "run_id": "r1", "seq": 3, "text": "退货"}
    assert json.loads(token.to_json()) == token.to_dict()
    assert "退货" in token.to_json()  # not escaped

    source = Source(1, "c1", "d1", "Policy", "/p.md", "Returns", 0.9, "七天无理由退货。")
    sources = Sources(run_id="r1", seq=2, sources=[source])
    assert sources.to_dict()["sources"][0]["chunk_id"] == "c1"

    done = Done(
        run_id="r1",
        seq=9,
        answer="七天[1]",
        citations=[CitedSource(1, "c1", 2)],
        finish_reason="stop",
        timings={"ttft_ms": 12.5},
        usage={"prompt_tokens": 10, "completion_tokens": 3},
    )
    data = done.to_dict()
    assert data["type"] == "done"
    assert data["citations"] == [
        {
            "number": 1,
            "chunk_id": "c1",
            "offset": 2,
            "supported": None,
            "score": None,
            "inferred": False,
        }
    ]
    assert set(data) >= {"answer", "citations", "finish_reason", "timings", "usage"}
