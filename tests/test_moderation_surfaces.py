"""Moderation seen from every surface of a real server, on the tests' mock upstream: the
stream that reaches a client is the moderated one, and a block stops the upstream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_server import sse_messages

from streamrag.config import Settings
from streamrag.moderation import RulesError
from streamrag.server.app import create_app

from conftest import serving, stats

# The mock answers " the quick brown fox jumps over the lazy dog while seven silver ...",
# one word per token.
RULES = """
[[rule]]
class = "animals"
words = ["brown fox"]
action = "mask"

[[rule]]
class = "rude"
words = ["lazy dog"]
action = "block"
"""


@pytest.fixture
def settings(server_settings: Settings, mock: str, tmp_path: Path) -> Settings:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    return server_settings.model_copy(
        update={"llm_base_url": mock, "llm_model": "mock-llm", "moderation_rules": rules}
    )


def test_sse_shows_the_moderated_stream_and_the_upstream_stops(
    settings: Settings, mock: str
) -> None:
    stats(mock, "reset=1")
    with serving(settings, None) as client:
        with client.stream("POST", "/v1/chat/stream", json={"question": "退货"}) as response:
            raw = b"".join(response.iter_bytes())
        data = [json.loads(m["data"]) for m in sse_messages(raw.decode().splitlines())]
        record = client.get(f"/v1/runs/{data[0]['run_id']}").json()
        replayed = client.get(f"/v1/runs/{data[0]['run_id']}/events")
        metrics = client.get("/metrics").text
    text = raw.decode("utf-8")
    assert "brown" not in text and "lazy" not in text and "dog" not in text
    done = data[-1]
    assert done["finish_reason"] == "moderated"
    assert done["answer"] == " the quick ＊＊＊＊＊＊＊＊＊ jumps over the "
    fired = [(d["rule_class"], d["action"]) for d in data if d["type"] == "moderation"]
    assert fired == [("animals", "mask"), ("rude", "block")]
    assert record["answer"] == done["answer"] and record["finish_reason"] == "moderated"
    assert {(m["rule_class"], m["action"], m["count"]) for m in record["moderation"]} == {
        ("animals", "mask", 1),
        ("rude", "block", 1),
    }
    assert "lazy" not in replayed.text and "brown" not in replayed.text  # a resume replays it
    assert (
        'streamrag_moderation_matches_total{action="block",rule_class="rude",target="output"} 1.0'
        in metrics
    )
    assert "streamrag_moderation_holdback_seconds_count 1.0" in metrics
    [generation] = stats(mock)["records"]
    # "dog" is token 9 and "while" (token 10) shows the match is whole: at most one more
    assert generation["client_closed_early"] and generation["tokens_sent"] <= 11


def test_openai_clients_see_content_filter(settings: Settings) -> None:
    import openai

    with serving(settings, None) as client:
        sdk = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="unused")
        chunks = list(
            sdk.chat.completions.create(
                model="shop", messages=[{"role": "user", "content": "退货"}], stream=True
            )
        )
        whole = sdk.chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "退货"}]
        )
        plain = client.get("/v1/chat/text", params={"q": "退货"})
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " the quick ＊＊＊＊＊＊＊＊＊ jumps over the "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
    assert whole.choices[0].finish_reason == "content_filter"
    assert "lazy" not in whole.choices[0].message.content
    assert "[stopped by moderation: rude]" in plain.text and "lazy" not in plain.text


def test_a_broken_rules_file_stops_the_service_from_starting(
    settings: Settings, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[[rule]]\nclass = "x"\nregex = "(("\naction = "block"\n', "utf-8")
    with pytest.raises(RulesError, match=r"broken\.toml:1: rule 'x': invalid regex"):
        create_app(settings.model_copy(update={"moderation_rules": broken}))
    served = subprocess.run(
        [sys.executable, "-m", "streamrag", "--home", str(settings.home), "serve", "--port", "9"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"STREAMRAG_MODERATION_RULES": str(broken), "PATH": "/usr/bin:/bin"},
    )
    message = " ".join(served.stderr.split())  # as a terminal wrapped it
    assert served.returncode == 1 and "broken.toml:1: rule 'x': invalid regex" in message


def test_a_question_that_is_refused_never_reaches_the_model(
    settings: Settings, mock: str, tmp_path: Path
) -> None:
    rules = tmp_path / "refuse.toml"
    rules.write_text(
        'refusal = "抱歉，无法回答。"\n[[rule]]\nclass = "topic"\nwords = ["竞争对手"]\n'
        'action = "refuse"\non = ["input"]\n',
        encoding="utf-8",
    )
    stats(mock, "reset=1")
    with serving(settings.model_copy(update={"moderation_rules": rules}), None) as client:
        answer = client.post("/v1/chat", json={"question": "说说竞争 对手"}).json()
    assert answer["text"] == "抱歉，无法回答。" and answer["finish_reason"] == "moderated"
    assert stats(mock)["records"] == []


def test_a_classifier_gates_the_served_stream_and_is_measured(
    settings: Settings, mock: str, tmp_path: Path
) -> None:
    rules = tmp_path / "classifier.toml"
    rules.write_text(
        f'[[rule]]\nclass = "toxic"\nclassifier = "{mock}/moderations"\naction = "block"\n'
        'on = ["output"]\nmax_hold_chars = 40\n',
        encoding="utf-8",
    )
    stats(mock, "reset=1")
    with serving(settings.model_copy(update={"moderation_rules": rules}), None) as client:
        raw = client.post("/v1/chat/stream", json={"question": "退货"}).text
        metrics = client.get("/metrics").text
    data = [json.loads(m["data"]) for m in sse_messages(raw.splitlines())]
    tokens = [d["text"] for d in data if d["type"] == "token"]
    assert tokens and all(len(text) >= 40 for text in tokens)  # let out a checked piece at a time
    assert "lanterns" not in raw and data[-1]["finish_reason"] == "moderated"
    asked = stats(mock)["moderated"]
    assert "".join(asked[:-1]) == "".join(tokens) and "lanterns" in asked[-1]
    assert "streamrag_moderation_classifier_seconds_count 1.0" in metrics
