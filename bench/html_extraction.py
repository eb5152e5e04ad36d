"""Main text of HTML pages: streamrag's loader against trafilatura, on texinfo manuals.

Texinfo's HTML marks its navigation (``div.nav-panel`` or ``div.header``: "Next: …, Up: …")
and its menus (``ul.mini-toc``, ``ul.section-toc``), so each page says what is boilerplate
and what is content: every paragraph, list item and code block outside those. For each extractor:
pages whose output keeps a navigation line, and the share of content paragraphs found in
the output (recall; whitespace-normalized substring match).

    python bench/html_extraction.py [FOLDER ...]   # default: Debian's libffi manual

trafilatura is optional here (``pip install trafilatura lxml_html_clean``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser

from streamrag.errors import LoadError
from streamrag.ingest.loaders import Origin, load_html

DEFAULT = Path("/usr/share/doc/libffi8/html")
_SPACE = re.compile(r"\s+")


def norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def content_of(html: str) -> list[str]:
    tree = LexborHTMLParser(html)
    for node in tree.css("div.nav-panel, div.header, ul.mini-toc, ul.section-toc"):
        node.decompose()
    return [t for node in tree.css("p, li, pre") if len(t := norm(node.text())) >= 20]


def ours(path: Path) -> str:
    try:
        loaded = load_html(Origin.of(path), path.read_bytes())
    except LoadError:
        return ""
    return "\n".join(block.text for doc in loaded.documents for block in doc.blocks)


def trafilatura_text(path: Path) -> str:
    import trafilatura

    return trafilatura.extract(path.read_text(errors="replace"), include_tables=True) or ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, default=[DEFAULT])
    args = parser.parse_args()
    pages = sorted(p for folder in args.folders for p in folder.rglob("*.htm*"))
    extractors = {"streamrag": ours}
    try:
        import trafilatura  # noqa: F401

        extractors["trafilatura"] = trafilatura_text
    except ImportError:
        print("trafilatura is not installed: measuring streamrag's loader alone")
    print(f"{len(pages)} pages")
    print(f"{'extractor':12} {'pages with navigation':>22} {'content recall':>15}")
    for name, extract in extractors.items():
        with_nav, found, total = 0, 0, 0
        for page in pages:
            text = norm(extract(page))
            with_nav += bool(re.search(r"\b(Next|Previous|Up):", text))
            content = content_of(page.read_text(errors="replace"))
            total += len(content)
            found += sum(paragraph in text for paragraph in content)
        recall = found / total if total else float("nan")
        print(f"{name:12} {with_nav:>22} {recall:15.3f}")


if __name__ == "__main__":
    main()
