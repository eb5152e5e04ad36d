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
    """Instructions (``system`` replaces the default wording per language), then the numbered
    sources and the question."""
    language = language_of(question)
    blocks = []
    for source in sources:
        blocks.append(f"[{source.number}] {heading(source)}\n{source.text}")
    user = (
        f"{SOURCES_LABEL[language]}:\n\n"
        + "\n\n".join(blocks)
        + f"\n\n{QUESTION_LABEL[language]}: {question}"
    )
    return [
        {"role": "system", "content": (system or {}).get(language) or SYSTEM[language]},
        {"role": "user", "content": user},
    ]
