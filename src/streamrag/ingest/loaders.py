"""File loaders: one function per format turns a file's bytes into documents of blocks.

Every loader raises :class:`LoadError` with a reason a person can act on ("encrypted PDF: a
password is required", "empty file", ...). A ``.jsonl`` file yields one document per line;
a bad line is reported and the other lines are kept. Work per file is bounded: an archive
(``.docx``) is checked against :data:`ARCHIVE_LIMITS` before anything is expanded, a PDF may
have at most :data:`PDF_MAX_PAGES` pages.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamrag.errors import LoadError
from streamrag.ingest.chunker import Block
from streamrag.ingest.clean import clean_text
from streamrag.ingest.decode import decode_text


@dataclass(slots=True)
class LoadedDocument:
    """A document ready to be chunked."""

    doc_id: str
    title: str
    blocks: list[Block]
    source: str
    content_hash: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class LoadedFile:
    """What a file yielded: its documents and the problems met on the way (bad jsonl lines)."""

    documents: list[LoadedDocument]
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Origin:
    """What a file's documents are recorded as: the id of its document (the prefix of its
    lines' ids for ``.jsonl``), the source shown with them and a title of last resort.

    A file read from disk is its own path (:meth:`of`); an uploaded file is not: its id is
    opaque and its source the name it was uploaded under.
    """

    doc_id: str
    source: str
    stem: str

    @classmethod
    def of(cls, path: Path) -> Origin:
        return cls(str(path), str(path), path.stem)


Loader = Callable[[Origin, bytes], LoadedFile]


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """How far an archive may expand: in total, and per member relative to its packed size."""

    max_expanded_bytes: int = 64 * 1024 * 1024
    max_ratio: float = 100.0
    ratio_from_bytes: int = 1024 * 1024  # smaller members may compress better than max_ratio


ARCHIVE_LIMITS = ArchiveLimits()
PDF_MAX_PAGES = 5000


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _single(
    origin: Origin, data: bytes, title: str, blocks: list[Block], **meta: Any
) -> LoadedFile:
    blocks = [block for block in blocks if block.text]
    if not blocks:
        raise LoadError("no text in the file")
    doc = LoadedDocument(
        doc_id=origin.doc_id,
        title=title or origin.stem,
        blocks=blocks,
        source=origin.source,
        content_hash=sha256(data),
        meta=meta,
    )
    return LoadedFile([doc])


_TITLE_MAX = 60
_SENTENCE_PUNCTUATION = tuple("。！？；.!?;，,")


def load_txt(origin: Origin, data: bytes) -> LoadedFile:
    text, encoding = decode_text(data)
    if _UNDERLINE.search(text):  # headings underlined with ==== or ----
        title, blocks = _sections(text, atx=False)
        return _single(origin, data, title or origin.stem, blocks, encoding=encoding)
    text = clean_text(text)
    return _single(origin, data, _first_line_title(text), [Block(text)], encoding=encoding)


def _first_line_title(text: str) -> str:
    """A short first line that is not a sentence, followed by more text, is a title."""
    first, _, rest = text.partition("\n")
    first = first.strip()
    if rest.strip() and len(first) <= _TITLE_MAX and not first.endswith(_SENTENCE_PUNCTUATION):
        return first
    return ""


_ATX_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_UNDERLINE = re.compile(r"^[ \t]*(={3,}|-{3,})[ \t]*$", re.MULTILINE)
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def load_markdown(origin: Origin, data: bytes) -> LoadedFile:
    text, encoding = decode_text(data)
    title, blocks = _sections(text, atx=True)
    return _single(origin, data, title or origin.stem, blocks, encoding=encoding)


def _sections(text: str, *, atx: bool) -> tuple[str, list[Block]]:
    """The title (the first level-1 heading) and the blocks under each heading path of a
    Markdown text (``atx``: "# headings" too) or a plain one: a line underlined with ``===``
    is a level-1 heading, with ``---`` a level-2 one (setext), outside code fences."""
    headings: list[str] = []
    blocks: list[Block] = []
    lines: list[str] = []
    in_fence = False
    title = ""

    def flush() -> None:
        if lines:
            blocks.append(Block(clean_text("\n".join(lines)), tuple(headings)))
            lines.clear()

    def open_heading(level: int, name: str) -> None:
        nonlocal title
        flush()
        del headings[level - 1 :]
        headings.extend([""] * (level - 1 - len(headings)))
        headings.append(name)
        title = title or (name if level == 1 else "")

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence or not atx else _ATX_HEADING.match(line)
        underline = None if in_fence else _UNDERLINE.fullmatch(line)
        if heading:
            open_heading(len(heading.group(1)), _md_inline(heading.group(2)))
        elif underline and _one_line_paragraph(lines):
            name = lines.pop().strip()
            open_heading(1 if underline.group(1)[0] == "=" else 2, name)
        else:
            lines.append(line if in_fence or not atx else _md_inline(line))
    flush()
    return title, [Block(b.text, tuple(h for h in b.headings if h), b.page) for b in blocks]


def _one_line_paragraph(lines: list[str]) -> bool:
    """Whether the last of ``lines`` is a paragraph of its own (what an underline makes a
    heading; under a longer paragraph or a blank line it is a rule)."""
    return bool(lines and lines[-1].strip() and (len(lines) == 1 or not lines[-2].strip()))


def _md_inline(line: str) -> str:
    return _MD_LINK.sub(r"\1", _MD_IMAGE.sub(r"\1", line))


_HTML_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head", "nav"})
_HTML_SKIP_ROLES = frozenset({"navigation", "banner", "contentinfo", "search", "menu"})
_HTML_BLOCK = frozenset(
    """
    address article aside blockquote br dd div dl dt figcaption figure footer form h1 h2 h3 h4
    h5 h6 header hr li main ol p pre section table td th tr ul
    """.split()
)
# A paragraph whose text is mostly link text is navigation (a "Previous: … Up: …" line, a
# menu, a list of related pages), not content: the link-density rule of boilerplate removal
# (Kohlschütter et al., 2010, "Boilerplate Detection using Shallow Text Features").
LINK_DENSITY = 0.5


def load_html(origin: Origin, data: bytes) -> LoadedFile:
    """Visible text by sections under the page's headings, without navigation: ``<nav>``,
    landmark roles, and paragraphs that are mostly links (``LINK_DENSITY``)."""
    from selectolax.lexbor import LexborHTMLParser

    text, encoding = decode_text(data)
    tree = LexborHTMLParser(text)
    root = tree.body or tree.root
    if root is None:
        raise LoadError("no HTML body")
    title_node = tree.css_first("title")
    title = clean_text(title_node.text()) if title_node else ""
    headings: list[str] = []
    blocks: list[Block] = []
    parts: list[str] = []
    paragraph = 0  # where the current paragraph starts in parts
    chars = link_chars = 0
    navigation = False  # whether any text was dropped as navigation

    def end_paragraph() -> None:
        nonlocal paragraph, chars, link_chars, navigation
        if chars and link_chars / chars >= LINK_DENSITY:
            del parts[paragraph:]
            navigation = True
        paragraph, chars, link_chars = len(parts), 0, 0

    def flush() -> None:
        nonlocal paragraph
        end_paragraph()
        if parts:
            blocks.append(Block(clean_text("".join(parts)), tuple(headings)))
            parts.clear()
            paragraph = 0

    skip_until: Any = None
    for node in root.traverse(include_text=True):
        if skip_until is not None:
            if _inside(node, skip_until):
                continue
            skip_until = None
        tag = node.tag
        if tag in _HTML_SKIP or (node.attributes.get("role") or "") in _HTML_SKIP_ROLES:
            skip_until = node
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            flush()
            level = int(tag[1])
            del headings[level - 1 :]
            headings.append(clean_text(node.text(separator=" ")))
            title = title or (headings[-1] if level == 1 else "")
            skip_until = node
        elif tag == "-text":
            content = node.text_content or ""
            parts.append(content)
            visible = len(content.strip())
            chars += visible
            if _in_link(node):
                link_chars += visible
        elif tag in _HTML_BLOCK:
            end_paragraph()
            parts.append("\n")
            paragraph += 1
    flush()
    if navigation and not any(block.text for block in blocks):
        raise LoadError("only navigation links, no text")
    return _single(origin, data, title or origin.stem, blocks, encoding=encoding)


def _in_link(node: Any) -> bool:
    parent = node.parent
    while parent is not None and parent.tag not in _HTML_BLOCK:
        if parent.tag == "a":
            return True
        parent = parent.parent
    return False


def _inside(node: Any, ancestor: Any) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.mem_id == ancestor.mem_id:
            return True
        parent = parent.parent
    return False


def load_pdf(origin: Origin, data: bytes) -> LoadedFile:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    if not data.strip():
        raise LoadError("empty file")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError("encrypted PDF: a password is required")
        declared = reader.root_object["/Pages"].get_object().get("/Count", 0)
        if (count := max(int(declared), len(reader.pages))) > PDF_MAX_PAGES:
            raise LoadError(f"the PDF has {count} pages; the limit is {PDF_MAX_PAGES}")
        pages = [page.extract_text() or "" for page in reader.pages]
        info_title = (reader.metadata.title if reader.metadata else None) or ""
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise LoadError(f"corrupt or unreadable PDF ({exc})") from exc
    except LimitReachedError as exc:
        raise LoadError(f"the PDF is too large to read ({exc})") from exc
    blocks = [
        Block(clean_text(text, unwrap=True), (), number)
        for number, text in enumerate(pages, start=1)
    ]
    if not any(block.text for block in blocks):
        raise LoadError("PDF has no extractable text (scanned images need OCR, not supported)")
    return _single(origin, data, info_title.strip() or origin.stem, blocks, pages=len(pages))


def load_docx(origin: Origin, data: bytes) -> LoadedFile:
    import docx
    from docx.table import Table

    try:
        check_archive(data)
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise LoadError(f"corrupt or unreadable DOCX ({exc})") from exc
    headings: list[str] = []
    blocks: list[Block] = []
    title = (document.core_properties.title or "").strip()
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = (" | ".join(cell.text.strip() for cell in row.cells) for row in item.rows)
            blocks.append(Block(clean_text("\n".join(rows)), tuple(headings)))
            continue
        text = clean_text(item.text)
        style = (item.style.name if item.style is not None else "") or ""
        if style == "Title":
            title = title or text
        elif style.startswith("Heading") and style[7:].strip().isdigit():
            level = int(style[7:])
            del headings[level - 1 :]
            headings.append(text)
        elif text:
            blocks.append(Block(text, tuple(h for h in headings if h)))
    return _single(origin, data, title or origin.stem, blocks)


def check_archive(data: bytes, limits: ArchiveLimits = ARCHIVE_LIMITS) -> None:
    """Refuse a zip archive that would expand beyond ``limits``, before expanding any of it.

    The sizes checked are the ones the archive declares; :mod:`zipfile` never reads a member
    past its declared size (a member that holds more fails its CRC check).
    """
    members = zipfile.ZipFile(io.BytesIO(data)).infolist()  # BadZipFile: not an archive
    total = 0
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > limits.ratio_from_bytes and ratio > limits.max_ratio:
            raise LoadError(
                f"archive member {member.filename!r} expands {ratio:.0f} times "
                f"(the limit is {limits.max_ratio:.0f}): refused as a likely zip bomb"
            )
        total += member.file_size
        if total > limits.max_expanded_bytes:
            raise LoadError(
                f"the archive expands to more than {limits.max_expanded_bytes // 2**20} MiB "
                "(the limit for one file)"
            )


def load_jsonl(origin: Origin, data: bytes) -> LoadedFile:
    """One document per line: ``{"id", "title", "text", ...}``; other keys become metadata."""
    text, _ = decode_text(data)
    documents: list[LoadedDocument] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(record, dict):
            problems.append(f"line {number}: expected a JSON object, got {type(record).__name__}")
            continue
        body = record.get("text")
        if not isinstance(body, str) or not body.strip():
            problems.append(f'line {number}: missing or empty "text"')
            continue
        doc_id = str(record.get("id") or f"{origin.doc_id}#{number}")
        if doc_id in seen:
            problems.append(f"line {number}: duplicate id {doc_id!r}")
            continue
        seen.add(doc_id)
        title = str(record.get("title") or "")
        meta = {k: v for k, v in record.items() if k not in ("id", "title", "text")}
        canonical = json.dumps(record, ensure_ascii=False, sort_keys=True).encode()
        documents.append(
            LoadedDocument(
                doc_id=doc_id,
                title=title,
                blocks=[Block(clean_text(body))],
                source=origin.source,
                content_hash=sha256(canonical),
                meta=meta,
            )
        )
    if not documents and not problems:
        raise LoadError("no documents in the file")
    return LoadedFile(documents, problems)


LOADERS: dict[str, Loader] = {
    ".txt": load_txt,
    ".text": load_txt,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".jsonl": load_jsonl,
}


def loader_for(path: Path) -> Loader | None:
    """The loader for ``path``'s suffix, or None when we do not read that type."""
    return LOADERS.get(path.suffix.lower())
