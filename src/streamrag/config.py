"""Settings from flags, environment (``STREAMRAG_*``), ``.env`` and a TOML config file.

Precedence, highest first: values passed in code or by CLI flags, environment variables,
``.env`` in the working directory, the TOML file named by ``STREAMRAG_CONFIG`` (or
``./streamrag.toml``), then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "STREAMRAG_CONFIG"
DEFAULT_CONFIG_FILE = Path("streamrag.toml")


def default_home() -> Path:
    """The data directory used when none is configured: ``$XDG_DATA_HOME/streamrag``."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "streamrag"


def config_file_path() -> Path | None:
    """The TOML config file in effect, if any."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            from streamrag.errors import ConfigError

            raise ConfigError(f"{CONFIG_ENV}={named!r}: no such file")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


class Settings(BaseSettings):
    """Everything streamrag can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMRAG_", env_file=".env", extra="ignore", validate_default=True
    )

    home: Path = Field(default_factory=default_home, description="Data directory.")
    kb: str = Field("default", description="Knowledge base used when none is named.")

    embed_model: str = Field(
        "e5-small",
        description="Embedding model: 'use-m3' or 'e5-small' (bundled), or the model name of "
        "an OpenAI-compatible endpoint when embed_base_url is set.",
    )
    embed_base_url: str | None = Field(None, description="OpenAI-compatible embeddings URL.")
    embed_api_key: str | None = Field(None, description="API key for embed_base_url.")
    embed_batch_size: int = Field(32, ge=1, le=2048)
    embed_threads: int = Field(0, ge=0, description="Threads for local models; 0 = all cores.")

    chunk_size: int = Field(500, ge=50, le=20000, description="Chunk size in characters.")
    chunk_overlap: int = Field(80, ge=0, description="Overlap between chunks in characters.")

    search_top_k: int = Field(5, ge=1, le=1000)
    rerank_base_url: str | None = Field(
        None,
        description="A reranker's API (the /v1/rerank shape of Jina, Xinference, vLLM, "
        "SiliconFlow, TEI): it reorders the best rerank_top_n hits of every search. Off if unset.",
    )
    rerank_api_key: str | None = Field(None, description="API key for rerank_base_url.")
    rerank_model: str = Field("", description="Model name sent to rerank_base_url.")
    rerank_top_n: int = Field(20, ge=1, le=1000, description="Hits the reranker reorders.")
    moderation_rules: Path | None = Field(
        None,
        description="A TOML file of moderation rules for every knowledge base (word lists, "
        "regular expressions, built-in PII detectors; see streamrag.moderation.rules); a "
        "knowledge base may add its own ('streamrag kb rules').",
    )

    llm_base_url: str | None = Field(
        None,
        description="OpenAI-compatible chat API; when set it is used instead of the "
        "bundled local model.",
    )
    llm_api_key: str | None = Field(None, description="API key for llm_base_url.")
    llm_model: str = Field(
        "default",
        description="Model name sent to llm_base_url; without one, the bundled model: "
        "'qwen2.5-coder-0.5b' (the default) or 'qwen2.5-coder-1.5b' (streamrag[quality]).",
    )
    llm_threads: int = Field(0, ge=0, description="Threads for the local model; 0 = all cores.")
    llm_timeout_s: float = Field(
        60.0, gt=0, description="Longest wait for the API's next bytes (first token included)."
    )

    answer_top_k: int = Field(5, ge=1, le=50, description="Sources retrieved per answer.")
    context_tokens: int | None = Field(
        None,
        ge=50,
        description="Estimated tokens of sources given to the model (≥ 1 source); unset: the "
        "model's own budget (700 for the bundled 0.5B, measured by bench/context_budget.py; "
        "1500 for the others).",
    )
    max_tokens: int = Field(512, ge=1, description="Longest answer, in tokens.")
    temperature: float = Field(0.1, ge=0.0, le=2.0)
    condense: Literal["llm", "rules", "off"] = Field(
        "rules",
        description="How follow-up questions become standalone: 'rules' (the earlier questions "
        "back to the last one that did not refer back go in front), 'llm' (the model rewrites "
        "it; falls back to 'rules') or 'off'.",
    )
    history_tokens: int = Field(
        1000, ge=0, description="Estimated tokens of conversation history used to condense."
    )
    resume_grace_s: float = Field(
        5.0,
        ge=0,
        description="How long a run goes on after its client disconnected, for a resume; "
        "0 cancels it at once.",
    )
    heartbeat_s: float = Field(15.0, gt=0, description="Seconds between SSE heartbeats.")
    database_url: str | None = Field(
        None,
        description="Where knowledge bases, sessions, run records and uploads are kept: unset "
        "for the embedded SQLite files under home, or postgresql://user:password@host/db "
        "(PostgreSQL with pgvector; schema created and upgraded by streamrag).",
    )
    redis_url: str | None = Field(
        None,
        description="Redis shared by the replicas of 'streamrag serve': a run started on one "
        "is resumed and cancelled on any (e.g. redis://127.0.0.1:6379/0).",
    )
    replica_timeout_s: float = Field(
        10.0,
        gt=0,
        description="With redis_url: a replica silent this long is dead; another one ends its "
        "runs as interrupted (worker_lost).",
    )
    max_question_chars: int = Field(4000, ge=1, description="Longest question accepted.")
    max_history_chars: int = Field(
        100_000, ge=0, description="Most characters of earlier messages a request may carry."
    )
    max_body_kb: int = Field(
        2048, ge=1, description="Largest request body other than an upload, in KiB."
    )
    upload_max_mb: int = Field(50, ge=1, description="Largest upload request, in MB.")
    upload_max_files: int = Field(100, ge=1, description="Most files in one upload.")
    ingest_workers: int = Field(
        1, ge=1, description="Processes 'serve' ingests uploads in (one job each at a time)."
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Bearer tokens 'serve' accepts (comma-separated); empty: no key needed.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed to call 'serve' from a browser."
    )
    system_prompt_zh: str | None = Field(None, description="Replaces the Chinese instructions.")
    system_prompt_en: str | None = Field(None, description="Replaces the English instructions.")

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _check_overlap(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than "
                f"chunk_size ({self.chunk_size})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        toml_file = config_file_path()
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Build settings; ``overrides`` whose value is None are ignored (unset CLI flags)."""
    from pydantic import ValidationError

    from streamrag.errors import ConfigError

    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
