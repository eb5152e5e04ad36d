"""Unreadable and hostile files of every supported type: each fails by itself with a reason,
the rest of the ingest goes on — through the Python API, the CLI and the upload endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamrag import KnowledgeBase
from streamrag.errors import LoadError
from streamrag.ingest.loaders import ArchiveLimits, check_archive

from conftest import HashEmbedder, ScriptedLLM, serving
from fixtures import broken_files

GOOD = "退货政策：自签收之日起七天内可以无理由退货。"


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("bad")
    words = broken_files(folder)
    (folder / "good.txt").write_text(GOOD, encoding="utf-8")
    return folder, words


def test_each_broken_file_fails_alone_with_its_reason(settings, bad) -> None:
    folder, words = bad
    with KnowledgeBase("k", settings=settings, embedder=HashEmbedder()) as kb:
        report = kb.ingest([folder])
        assert [Path(p).name for p in report.ingested] == ["good.txt"]
        failed = {Path(path).name: reason for path, reason in report.failed}
        assert set(failed) == set(words)
        for name, word in words.items():
            assert word in failed[name], (name, failed[name])
        assert kb.store.count() == (1, 1)


def test_a_zip_bomb_is_refused_before_it_expands(bad) -> None:
    folder, _ = bad
    data = (folder / "bomb.docx").read_bytes()
    assert len(data) < 1024 * 1024
    with pytest.raises(LoadError, match=r"expands 1\d{3} times"):
        check_archive(data)
    with pytest.raises(LoadError, match="more than 0 MiB"):
        check_archive(data, ArchiveLimits(max_expanded_bytes=1000, max_ratio=10_000))


def test_the_cli_names_every_failed_file_and_ingests_the_rest(
    bad, mock_llm, tmp_path: Path
) -> None:
    folder, words = bad
    base, _ = mock_llm
    env = {
        **os.environ,
        "STREAMRAG_HOME": str(tmp_path / "home"),
        "STREAMRAG_EMBED_BASE_URL": base,
        "STREAMRAG_EMBED_MODEL": "mock-embed",
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [sys.executable, "-m", "streamrag", "ingest", str(folder), "--kb", "k", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert [Path(p).name for p in report["ingested"]] == ["good.txt"]
    failed = {Path(item["path"]).name: item["reason"] for item in report["failed"]}
    assert set(failed) == set(words)


def test_an_upload_with_a_broken_file_stores_the_others(server_settings, bad) -> None:
    folder, words = bad
    names = ["good.txt", "not-closed.docx", "bomb.docx", "deep.pdf"]
    files = [("files", (name, (folder / name).read_bytes())) for name in names]
    files.append(("files", ("second.txt", b"Orders over 99 yuan ship for free.")))
    with serving(server_settings, ScriptedLLM(["ok"])) as client:
        response = client.post("/v1/kbs/up/documents", files=files, params={"stream": "false"})
        assert response.status_code == 200, response.text
        report = response.json()
        assert sorted(report["ingested"]) == ["good.txt", "second.txt"]
        failed = {item["path"]: item["reason"] for item in report["failed"]}
        assert set(failed) == {"not-closed.docx", "bomb.docx", "deep.pdf"}
        assert all(words[name] in reason for name, reason in failed.items())
        assert len(client.get("/v1/kbs/up/documents").json()) == 2

        streamed = client.post("/v1/kbs/up2/documents", files=files)
        kinds = [line for line in streamed.text.splitlines() if line.startswith("event: ")]
        assert "event: error" not in kinds and kinds[-1] == "event: done"
        done = json.loads(streamed.text.strip().rsplit("data: ", 1)[1])
        assert sorted(done["ingested"]) == ["good.txt", "second.txt"] and len(done["failed"]) == 3
