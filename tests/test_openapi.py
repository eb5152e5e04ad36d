"""The OpenAPI spec FastAPI generates: complete, described, and every operation answers
malformed input with a JSON error, never a 500."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from streamrag.answer.events import EVENT_TYPES
from streamrag.config import Settings

from conftest import ScriptedLLM, serving

ROUTES = {
    ("POST", "/v1/chat/stream"),
    ("GET", "/v1/chat/stream"),
    ("POST", "/v1/chat"),
    ("GET", "/v1/chat/text"),
    ("GET", "/v1/runs"),
    ("GET", "/v1/runs/{run_id}"),
    ("GET", "/v1/runs/{run_id}/sources"),
    ("GET", "/v1/info"),
    ("GET", "/v1/runs/{run_id}/events"),
    ("POST", "/v1/runs/{run_id}/cancel"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("GET", "/v1/models"),
    ("GET", "/v1/sessions"),
    ("GET", "/v1/sessions/{session_id}"),
    ("PATCH", "/v1/sessions/{session_id}"),
    ("DELETE", "/v1/sessions/{session_id}"),
    ("GET", "/v1/kbs"),
    ("DELETE", "/v1/kbs/{kb}"),
    ("GET", "/v1/kbs/{kb}/documents"),
    ("POST", "/v1/kbs/{kb}/documents"),
    ("DELETE", "/v1/kbs/{kb}/documents/{doc_id}"),
    ("POST", "/v1/kbs/{kb}/search"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("HEAD", "/healthz"),
}
BODIES = [
    b"{",
    b"[]",
    b"\xff\xfe\x00",
    b'{"question": 5, "query": [], "messages": "x", "model": null, "title": null}',
    b'{"question": "x", "kb": "../../etc", "top_k": 1e9, "filters": {"doc_ids": "a"}}',
    b'{"model": "zz", "messages": [{"role": "robot", "content": 1}]}',
]
PARAMS = {"q": "", "top_k": "abc", "limit": "-1", "after": "x", "session_id": "../x", "kb": "/"}


def test_the_spec_is_complete_and_described(server_settings) -> None:
    with serving(server_settings, ScriptedLLM(["x"])) as client:
        spec = client.get("/openapi.json").json()
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert routes == ROUTES
    for path, ops in spec["paths"].items():
        for method, operation in ops.items():
            assert operation.get("description"), f"{method} {path} is not described"
            assert operation.get("tags"), f"{method} {path} has no tag"
    upload = spec["paths"]["/v1/kbs/{kb}/documents"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert (
        "text/event-stream"
        in spec["paths"]["/v1/chat/stream"]["post"]["responses"]["200"]["content"]
    )


def test_malformed_input_on_every_operation_gets_a_json_error(server_settings) -> None:
    with serving(server_settings, ScriptedLLM(["x"])) as client:
        for method, path in sorted(ROUTES):
            concrete = path.format(run_id="r", session_id="s", kb="zz", doc_id="d")
            for body in BODIES:
                response = client.request(
                    method,
                    concrete,
                    content=body,
                    params=PARAMS,
                    headers={"content-type": "application/json"},
                )
                where = f"{method} {concrete} {body!r}"
                assert response.status_code < 500, (where, response.text)
                if response.status_code >= 400:
                    error = response.json()["error"]
                    assert error["code"] and error["message"], where
        unknown = client.get("/v1/nothing-here")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        wrong = client.put("/v1/chat")
        assert wrong.status_code == 405
        assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_schemathesis_finds_nothing_wrong(server_settings: Settings, tmp_path: Path) -> None:
    """schemathesis with every check and every phase, API keys on, against a real server:
    each status, media type, response body and event the spec documents is what the service
    does, schema-valid requests are accepted and schema-invalid ones refused."""
    settings = server_settings.model_copy(update={"api_keys": ["k-schemathesis"]})
    with serving(settings, ScriptedLLM(["An answer ", "[1]."])) as client:
        command = [
            *(sys.executable, "-m", "schemathesis.cli", "run", f"{client.base_url}/openapi.json"),
            *("--checks", "all", "--max-examples", "40", "--seed", "20261203"),
            *("--workers", "1", "--request-timeout", "60", "--no-color"),
            *("--header", "Authorization: Bearer k-schemathesis"),
        ]
        run = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert f"Tested: {len(ROUTES)}" in run.stdout, report  # every operation, none skipped
    generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert generated and int(generated[1]) >= 500 and generated[1] == generated[2], report


def test_the_spec_documents_errors_events_and_answers(server_settings: Settings) -> None:
    with serving(server_settings, ScriptedLLM(["x"])) as client:
        spec = client.get("/openapi.json").json()
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, ops in paths.items():
        for method, operation in ops.items():
            responses = operation["responses"]
            keyed = path != "/healthz"
            assert ("401" in responses) == keyed, (method, path)
            for status, response in responses.items():
                if status >= "400":
                    assert response["content"]["application/json"]["schema"] == error
            if "{" in path:
                assert "404" in responses or path == "/v1/kbs/{kb}/documents", (method, path)
    upload = paths["/v1/kbs/{kb}/documents"]["post"]["responses"]
    assert {"411", "413", "415", "422"} <= set(upload)
    answers = upload["200"]["content"]
    assert answers["application/json"]["schema"] == {"$ref": "#/components/schemas/IngestSummary"}
    assert set(schemas["IngestSummary"]["required"]) == {
        "ingested", "unchanged", "failed", "ignored", "chunks", "removed", "seconds"
    }  # fmt: skip
    ingest_events = answers["text/event-stream"]["schema"]["oneOf"]
    assert [e["properties"]["event"]["const"] for e in ingest_events] == [
        "found", "reading", "planned", "embedded", "file", "removed", "tuned", "error", "done"
    ]  # fmt: skip
    stream = paths["/v1/chat/stream"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    events = {e["properties"]["event"]["const"]: e for e in stream["schema"]["oneOf"]}
    assert set(events) == set(EVENT_TYPES)
    token = events["token"]["properties"]["data"]
    assert token["contentMediaType"] == "application/json"
    assert schemas["TokenEvent"]["properties"]["type"] == {"const": "token"}
    assert {"text", "run_id", "seq"} <= set(schemas["TokenEvent"]["required"])
    assert "finish_reason" in schemas["DoneEvent"]["properties"]
    assert "HTTPValidationError" not in schemas  # FastAPI's 422 shape is not ours


def test_a_wrong_method_names_every_method_of_the_path(server_settings: Settings) -> None:
    with serving(server_settings, ScriptedLLM(["x"])) as client:
        stream = client.request("OPTIONS", "/v1/chat/stream")
        session = client.put("/v1/sessions/abc")
    assert stream.status_code == 405 and stream.headers["allow"] == "GET, POST"
    assert session.headers["allow"] == "DELETE, GET, PATCH"
