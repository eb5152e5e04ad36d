"""The HTTP service over the answer engine (``streamrag serve``)."""

from streamrag.server.app import create_app

__all__ = ["create_app"]
