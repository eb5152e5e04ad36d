"""Backends are chosen in one place from configuration, and a third party adds one through
an entry point (the ``streamrag`` group, ``register_backends``), as llm's plugins do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamrag.backends import backend_factories, open_backend, scheme_of
from streamrag.backends.embedded import EmbeddedBackend
from streamrag.config import Settings, redact
from streamrag.errors import ConfigError

PLUGIN = '''
from streamrag.backends import hookimpl
from streamrag.backends.embedded import EmbeddedBackend


class NamedBackend(EmbeddedBackend):
    """The embedded files, in a folder named by the URL: a stand-in for another store."""


@hookimpl
def register_backends(register):
    def open_named(settings):
        folder = settings.database_url.split("://", 1)[1]
        return NamedBackend(settings.home / folder)

    register("files", open_named)
'''


def test_the_scheme_of_the_database_url_picks_the_backend(settings: Settings) -> None:
    assert scheme_of(settings) == "embedded"
    assert isinstance(open_backend(settings), EmbeddedBackend)
    pg = settings.model_copy(update={"database_url": "postgresql+psycopg://u:p@h/db"})
    assert scheme_of(pg) == "postgresql"
    assert {"embedded", "postgresql", "postgres"} <= set(backend_factories())
    with pytest.raises(ConfigError, match=r"no backend for 'mysql'.*known: embedded"):
        open_backend(settings.model_copy(update={"database_url": "mysql://u:secret@h/db"}))
    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


def test_a_plugin_adds_a_backend_through_an_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "streamrag_files-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "streamrag_files.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: streamrag-files\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[streamrag]\nfiles = streamrag_files\n")
    env = {**os.environ, "PYTHONPATH": str(site), "STREAMRAG_HOME": str(tmp_path / "home")}
    corpus = tmp_path / "faq.md"
    corpus.write_text("# Returns\n\nReturns within seven days.", encoding="utf-8")
    cli = [sys.executable, "-m", "streamrag", "--embed-model", "use-m3"]
    for args in (["ingest", str(corpus), "--kb", "faq"], ["kb", "list", "--json"]):
        done = subprocess.run(
            [*cli, "--database-url", "files://elsewhere", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    [listed] = json.loads(done.stdout)
    assert listed["name"] == "faq" and listed["documents"] == 1
    assert listed["location"] == str(tmp_path / "home" / "elsewhere" / "kb" / "faq.sqlite")
    assert not (tmp_path / "home" / "kb").exists(), "the embedded default was not used"


def test_listing_searching_and_uploading_never_make_the_model(
    server_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only an answer needs the LLM: the rest of the API works when it cannot be made."""
    from conftest import serving

    def no_model(settings: Settings) -> None:
        raise AssertionError("the model was made")

    monkeypatch.setattr("streamrag.server.service.make_llm", no_model)
    with serving(server_settings, None) as client:
        assert client.get("/v1/kbs").json()[0]["name"] == "shop"
        assert client.get("/v1/kbs/shop/documents").status_code == 200
        found = client.post("/v1/kbs/shop/search", json={"query": "退货"}).json()
        assert found["hits"]
        uploaded = client.post(
            "/v1/kbs/new/documents",
            params={"stream": "false"},
            files=[("files", ("a.txt", "冰箱保修三年。".encode()))],
        )
        assert uploaded.json()["ingested"] == ["a.txt"]
        (document,) = client.get("/v1/kbs/new/documents").json()
        assert client.delete(f"/v1/kbs/new/documents/{document['doc_id']}").status_code == 200
