"""The backend protocols, and the hook a backend plugin implements."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pluggy
from starlette.datastructures import UploadFile

from streamrag.config import Settings
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
