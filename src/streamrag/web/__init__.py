"""The web chat page: static files (plain ES modules, no build step) served at ``/``."""

from pathlib import Path

STATIC = Path(__file__).parent / "static"
