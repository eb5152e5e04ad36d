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
from urllib.parse import urlsplit

import pluggy

from streamrag.backends.base import (
    EMBEDDED,
    Backend,
    BackendFactory,
    BackendSpecs,
    Catalog,
    History,
    Uploads,
    hookimpl,
    hookspec,
)
from streamrag.config import Settings, redact
from streamrag.errors import ConfigError

__all__ = [
    "EMBEDDED",
    "Backend",
    "BackendFactory",
    "BackendSpecs",
    "Catalog",
    "History",
    "Uploads",
    "backend_factories",
    "hookimpl",
    "hookspec",
    "open_backend",
    "scheme_of",
]


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
