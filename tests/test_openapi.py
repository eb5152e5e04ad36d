"""The OpenAPI spec FastAPI generates: complete, described, and every operation answers
malformed input with a JSON error, never a 500."""

from __future__ import annotations

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
