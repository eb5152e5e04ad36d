from pathlib import Path

import pytest

from streamrag.config import load_settings
from streamrag.errors import ConfigError


def test_defaults_live_under_the_users_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    settings = load_settings()
    assert settings.home == Path.home() / ".local" / "share" / "streamrag"
    assert settings.embed_model == "e5-small"


def test_precedence_flag_env_dotenv_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "streamrag.toml").write_text(
        'home = "/from/file"\nchunk_size = 300\nchunk_overlap = 30\nkb = "filekb"\n'
        'embed_model = "use-m3"\n',
        encoding="utf-8",
    )
    (tmp_path / ".env").write_text(
        "STREAMRAG_CHUNK_SIZE=400\nSTREAMRAG_KB=dotenvkb\n", encoding="utf-8"
    )
    monkeypatch.setenv("STREAMRAG_KB", "envkb")
    settings = load_settings()
    assert settings.home == Path("/from/file")  # only the file sets it
    assert settings.embed_model == "use-m3"
    assert settings.chunk_size == 400  # .env beats the file
    assert settings.kb == "envkb"  # the environment beats .env
    assert load_settings(kb="flagkb", home=tmp_path).kb == "flagkb"  # flags beat all
    assert load_settings(kb=None).kb == "envkb"  # an unset flag changes nothing


def test_config_file_named_by_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text('embed_base_url = "http://127.0.0.1:9/v1"\nembed_model = "bge-m3"\n')
    monkeypatch.setenv("STREAMRAG_CONFIG", str(config))
    settings = load_settings()
    assert settings.embed_base_url == "http://127.0.0.1:9/v1"
    monkeypatch.setenv("STREAMRAG_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml.*no such file"):
        load_settings()


def test_invalid_values_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMRAG_CHUNK_SIZE", "lots")
    with pytest.raises(ConfigError, match="chunk_size"):
        load_settings()
