"""The prompt: strict "answer only from these numbered sources", in the question's language."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from streamrag.answer.events import Source
from streamrag.llm.base import ChatMessage
from streamrag.retrieve.tokenize import CJK_CHAR

_LETTER = re.compile(r"[^\W\d_]")

SYSTEM = {
    "zh": (
        "你是严谨的知识库问答助手。只根据下面编号的资料回答问题，不要使用资料以外的知识，不要编造。"
        "在用到资料的句子末尾用方括号标注资料编号，例如 [1] 或 [1][2]。"
        "如果资料中没有答案，直接回答：“资料中没有找到这个问题的答案。” 用中文回答。"
    ),
    "en": (
        "You are a careful assistant for a knowledge base. Answer only from the numbered sources "
        "below; do not use outside knowledge and do not make anything up. After each sentence "
        "that uses a source, cite it in square brackets, e.g. [1] or [1][2]. If the sources do "
        'not contain the answer, reply: "The sources do not contain the answer to this '
        'question." Answer in English.'
    ),
}
QUESTION_LABEL = {"zh": "问题", "en": "Question"}
SOURCES_LABEL = {"zh": "资料", "en": "Sources"}
# One worked exchange before the real one: the bundled 0.5B model answers in full sentences and
# cites far more often with it (sample questions: 1/5 → 4/5 answered in Chinese).
EXAMPLE = {
    "zh": (
        "[1] 北京\n北京是中华人民共和国的首都，位于华北平原。\n\n[2] 上海\n上海是中国最大的城市。",
        "中国的首都是哪里？",
        "中国的首都是北京[1]。",
    ),
    "en": (
        "[1] Paris\nParis is the capital of France.\n\n[2] Lyon\nLyon is a city in France.",
        "What is the capital of France?",
        "The capital of France is Paris [1].",
    ),
}


def language_of(text: str) -> str:
    """'zh' when Chinese characters make up at least a fifth of the letters, else 'en'."""
    letters = len(_LETTER.findall(text))
    return "zh" if letters and len(CJK_CHAR.findall(text)) * 5 >= letters else "en"


def heading(source: Source) -> str:
    """A source's title and location, without repeating a title the location starts with."""
    if source.location.startswith(source.title):
        return source.location or source.title
    return " — ".join(part for part in (source.title, source.location) if part)


def build_messages(
    question: str, sources: Sequence[Source], system: Mapping[str, str] | None = None
) -> list[ChatMessage]:
    """Instructions (``system`` replaces the default wording per language), one worked
    example, then the numbered sources and the question."""
    language = language_of(question)
    blocks = "\n\n".join(
        f"[{source.number}] {heading(source)}\n{source.text}" for source in sources
    )
    example_sources, example_question, example_answer = EXAMPLE[language]
    return [
        {"role": "system", "content": (system or {}).get(language) or SYSTEM[language]},
        {"role": "user", "content": _user_turn(language, example_sources, example_question)},
        {"role": "assistant", "content": example_answer},
        {"role": "user", "content": _user_turn(language, blocks, question)},
    ]


def _user_turn(language: str, sources: str, question: str) -> str:
    return f"{SOURCES_LABEL[language]}:\n\n{sources}\n\n{QUESTION_LABEL[language]}: {question}"
