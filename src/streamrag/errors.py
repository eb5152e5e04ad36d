"""Errors raised by streamrag. Every message names what was wrong."""

from __future__ import annotations


class StreamragError(Exception):
    """Base class for all streamrag errors."""


class ConfigError(StreamragError):
    """The configuration is invalid or incomplete."""


class KnowledgeBaseNotFound(StreamragError):
    """A knowledge base that does not exist was asked for."""


class InvalidName(StreamragError):
    """A knowledge base name is not acceptable."""


class DocumentNotFound(StreamragError):
    """A document that is not in the knowledge base was asked for."""


class EmbeddingModelMismatch(StreamragError):
    """The knowledge base was built with another embedding model than the configured one."""


class LoadError(StreamragError):
    """A file could not be read into text (corrupt, encrypted, empty, unsupported ...)."""


class BackendUnavailable(StreamragError):
    """A service streamrag keeps its data in (PostgreSQL) cannot be reached; retry later."""
