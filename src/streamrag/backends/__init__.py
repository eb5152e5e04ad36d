"""Where streamrag keeps what lasts, chosen from configuration in one place.

A :class:`Backend` bundles the knowledge-base :class:`Catalog` (whose stores are
:class:`~streamrag.store.Store`), the :class:`History` (sessions, run records and their events)
and the :class:`Uploads`. :func:`open_backend` picks one by the scheme of
``settings.database_url``: none is the embedded default (SQLite files under ``home``),
``postgresql://`` is PostgreSQL with pgvector. Others come from plugins: a package that
declares an entry point in the ``streamrag`` group whose module has a ``register_backends``
hook (:class:`BackendSpecs`) can add a scheme, as simonw/llm's ``register_models`` does.
``RAG``, the engine and the server receive a backend; nothing else builds stores.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import pluggy
from starlette.datastructures import UploadFile

from streamrag.config import Settings
from streamrag.errors import ConfigError
from streamrag.history.base import Memory, RunHistory, SessionInfo
from streamrag.ingest.loaders import Origin
from streamrag.records import KnowledgeBaseInfo
from streamrag.store import Store

hookspec = pluggy.HookspecMarker("streamrag")
hookimpl = pluggy.HookimplMarker("streamrag")
EMBEDDED = "embedded"


class Catalog(Protocol):
    """The knowledge bases: list, open (creating), drop."""

    location: str

    def list(self) -> list[KnowledgeBaseInfo]: ...
    def exists(self, name: str) -> bool: ...
    def open(self, name: str) -> Store: ...
    def drop(self, name: str) -> bool: ...


class History(Memory, RunHistory, Protocol):
    """Conversations, run records and run events."""

    def session(self, session_id: str) -> SessionInfo | None: ...
    def close(self) -> None: ...


class Uploads(Protocol):
    """Uploaded files of each knowledge base, kept for as long as their documents."""

    def save(self, kb: str, files: list[UploadFile]) -> dict[Path, Origin]:
        """Keep the uploads; the local files to ingest them from, with what their documents
        are recorded as."""
        ...

    def release(self, origins: dict[Path, Origin]) -> None:
        """The ingest of files :meth:`save` returned has ended (their local copies may go)."""
        ...

    def discard(self, kb: str, filename: str) -> bool: ...
    def drop(self, kb: str) -> None: ...


class Backend(Protocol):
    """One place that keeps knowledge bases, history and uploads."""

    catalog: Catalog
    history: History
    uploads: Uploads

    def upgrade(self) -> list[str]:
        """Bring the schema to this version (opening a backend does too); the migrations
        applied since it was opened (none: it was up to date)."""
        ...

    def close(self) -> None: ...


BackendFactory = Callable[[Settings], Backend]


class BackendSpecs:
    """The hooks a backend plugin implements."""

    @hookspec
    def register_backends(self, register: Callable[[str, BackendFactory], None]) -> None:
        """Add backends: ``register(scheme, factory)``; ``factory(settings)`` opens one for a
        ``database_url`` with that scheme (``embedded`` when none is set)."""


@functools.cache
def backend_factories() -> dict[str, BackendFactory]:
    """Every registered backend by scheme: the built-in ones, then the plugins'."""
    from streamrag.backends import builtin

    manager = pluggy.PluginManager("streamrag")
    manager.add_hookspecs(BackendSpecs)
    manager.register(builtin)
    manager.load_setuptools_entrypoints("streamrag")
    factories: dict[str, BackendFactory] = {}
    manager.hook.register_backends(register=factories.__setitem__)
    return factories


def scheme_of(settings: Settings) -> str:
    """The backend ``settings`` ask for: the scheme of ``database_url`` (``postgresql+psycopg``
    counts as ``postgresql``), or ``embedded``."""
    if not settings.database_url:
        return EMBEDDED
    return urlsplit(settings.database_url).scheme.split("+")[0].lower()


def open_backend(settings: Settings) -> Backend:
    """The backend ``settings`` configure, opened (and its schema brought up to date)."""
    scheme = scheme_of(settings)
    factories = backend_factories()
    if scheme not in factories:
        raise ConfigError(
            f"database_url {redact(settings.database_url or '')!r}: no backend for "
            f"{scheme!r}; known: {', '.join(sorted(factories))}"
        )
    return factories[scheme](settings)


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
