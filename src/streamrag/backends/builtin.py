"""The backends that ship with streamrag."""

from __future__ import annotations

from collections.abc import Callable

from streamrag.backends.base import EMBEDDED, Backend, hookimpl
from streamrag.config import Settings


def _embedded(settings: Settings) -> Backend:
    from streamrag.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(settings.home)


def _postgresql(settings: Settings) -> Backend:
    from streamrag.postgres import PostgresBackend

    assert settings.database_url is not None
    return PostgresBackend(settings.database_url, settings.home)


@hookimpl
def register_backends(register: Callable[[str, Callable[[Settings], Backend]], None]) -> None:
    register(EMBEDDED, _embedded)
    register("postgresql", _postgresql)
    register("postgres", _postgresql)
