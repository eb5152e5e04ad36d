"""Moderation: rules on questions, answers and documents, applied while the answer streams.

:func:`rules_for` reads the rules a knowledge base answers under (the deployment's file,
``moderation_rules``, and the knowledge base's own); :func:`~streamrag.moderation.stream.moderation`
makes the engine's stage of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from streamrag.moderation.rules import Rule, Rules, RulesError, load_rules
from streamrag.moderation.stream import ModerationCheck, TextFilter, check_text, moderation

if TYPE_CHECKING:
    from streamrag.config import Settings

__all__ = [
    "ModerationCheck",
    "Rule",
    "Rules",
    "RulesError",
    "TextFilter",
    "check_text",
    "load_rules",
    "moderation",
    "rules_for",
]

KB_RULES_META = "moderation_rules"  # a knowledge base's own rules file (its path)


def rules_for(settings: Settings, kb_rules: str | None = None) -> Rules:
    """The deployment's rules, then those of the knowledge base (``kb_rules``: its file)."""
    rules = Rules()
    if settings.moderation_rules is not None:
        rules = rules + load_rules(settings.moderation_rules)
    if kb_rules:
        rules = rules + load_rules(Path(kb_rules))
    return rules
