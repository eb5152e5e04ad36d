"""A small bilingual knowledge base written for streamrag (a fictional appliance shop)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).parent / "docs"


@dataclass(frozen=True, slots=True)
class SampleQuestion:
    question: str
    source: str  # file name under DOCS that answers it
    answer: str  # a phrase the answer contains


def questions() -> list[SampleQuestion]:
    path = Path(__file__).parent / "questions.jsonl"
    with path.open(encoding="utf-8") as lines:
        return [SampleQuestion(**json.loads(line)) for line in lines if line.strip()]
