import json
from pathlib import Path

import pytest

from streamrag.errors import LoadError
from streamrag.ingest.decode import decode_text
from streamrag.ingest.loaders import (
    Origin,
    load_docx,
    load_html,
    load_jsonl,
    load_markdown,
    load_pdf,
    load_txt,
)

from fixtures import CJK_FONT, make_docx, make_pdf

POLICY = "退货政策：自收到商品之日起七天内可以无理由退货。请保留发票。"
POLICY_TW = "退貨政策：自收到商品之日起七天內可以無理由退貨。請保留發票。"


def load(loader, path: Path):
    return loader(Origin.of(path), path.read_bytes())


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (POLICY, "utf-8"),
        (POLICY, "gb18030"),
        (POLICY_TW, "big5"),
        (POLICY, "utf-16"),  # with BOM
        ("Return policy: 7 days. " + POLICY, "utf-16-le"),  # without BOM
        ("Return policy: 7 days. " + POLICY, "utf-16-be"),
        ("你好世界", "gb18030"),  # too short for statistics
    ],
)
def test_text_encodings_are_detected(tmp_path: Path, text: str, encoding: str) -> None:
    path = tmp_path / "policy.txt"
    path.write_bytes(text.encode(encoding))
    [doc] = load(load_txt, path).documents
    assert doc.blocks[0].text == text
    assert doc.title == "policy"


def test_a_short_first_line_of_a_text_file_is_its_title(tmp_path: Path) -> None:
    path = tmp_path / "ship.txt"
    path.write_text("配送说明\n\n" + POLICY, encoding="utf-8")
    assert load(load_txt, path).documents[0].title == "配送说明"
    path.write_text(POLICY + "\n" + POLICY, encoding="utf-8")
    assert load(load_txt, path).documents[0].title == "ship"


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty file"), (b"  \n\n ", "empty file"), (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary")],
)
def test_empty_and_binary_files_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(LoadError, match=reason):
        decode_text(data)


def test_markdown_heading_path_and_code_fences(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(
        "# 售后手册\n\n简介。\n\n## 退货\n\n"
        + POLICY
        + "\n\n```\n# not a heading\n```\n\n### 发票\n\n请看[发票说明](http://x/y)。"
        + "\n\n## Shipping\n\nTwo days.\n",
        encoding="utf-8",
    )
    [doc] = load(load_markdown, path).documents
    assert doc.title == "售后手册"
    assert [(b.headings, b.text) for b in doc.blocks] == [
        (("售后手册",), "简介。"),
        (("售后手册", "退货"), POLICY + "\n\n```\n# not a heading\n```"),
        (("售后手册", "退货", "发票"), "请看发票说明。"),
        (("售后手册", "Shipping"), "Two days."),
    ]


@pytest.mark.parametrize("loader", [load_txt, load_markdown])
def test_underlined_headings_in_plain_text_and_markdown(tmp_path: Path, loader) -> None:
    """ "Title" over ==== is a level-1 heading, over ---- a level-2 one (README and release
    notes style); a rule under a paragraph of several lines, or after a blank line, is not."""
    path = tmp_path / "NOTES.txt"
    path.write_text(
        "dpkg notes\n==========\n\nAbout the package.\n\nInstalling\n----------\n\n"
        "Run the installer.\nThen reboot.\n----------\n\n----\n\nUpgrading\n---\n\nJust do it.\n"
        "\n```\nnot a heading\n---\n```\n",
        encoding="utf-8",
    )
    [doc] = load(loader, path).documents
    assert doc.title == "dpkg notes"
    assert [(b.headings, b.text.splitlines()[0]) for b in doc.blocks] == [
        (("dpkg notes",), "About the package."),
        (("dpkg notes", "Installing"), "Run the installer."),
        (("dpkg notes", "Upgrading"), "Just do it."),
    ]
    assert "----------" in doc.blocks[1].text and "not a heading" in doc.blocks[2].text


def test_html_headings_text_and_no_scripts(tmp_path: Path) -> None:
    path = tmp_path / "faq.html"
    path.write_text(
        "<html><head><title>常见问题</title><style>p{}</style></head><body>"
        "<nav>首页 | 关于</nav><h1>退货</h1><p>" + POLICY + "</p>"
        "<h2>运费</h2><ul><li>上海 10元</li><li>北京 12元</li></ul>"
        "<script>alert('x')</script></body></html>",
        encoding="utf-8",
    )
    [doc] = load(load_html, path).documents
    assert doc.title == "常见问题"
    assert [(b.headings, b.text) for b in doc.blocks] == [
        (("退货",), POLICY),
        (("退货", "运费"), "上海 10元\n北京 12元"),
    ]


def test_html_navigation_is_not_content(tmp_path: Path) -> None:
    path = tmp_path / "Thread-Safety.html"
    path.write_text(  # the shape of a texinfo manual page (libffi's, in Debian)
        "<html><body><div class='nav-panel'><p>Previous: <a href='a.html'>Closure Example</a>,"
        " Up: <a href='u.html'>Using libffi</a> &nbsp; [<a href='i.html'>Index</a>]</p></div>"
        "<hr><h4>2.7 Thread Safety</h4><p><code>libffi</code> is not completely thread-safe."
        " See <a href='c.html'>the closure API</a> for more.</p>"
        "<ul class='mini-toc'><li><a href='b.html'>The Basics</a></li>"
        "<li><a href='s.html'>Simple Example</a></li></ul>"
        "<div role='navigation'>Site map</div><p>Only one thread at a time.</p></body></html>",
        encoding="utf-8",
    )
    [doc] = load(load_html, path).documents
    assert [(b.headings, b.text) for b in doc.blocks] == [
        (
            ("2.7 Thread Safety",),
            "libffi is not completely thread-safe. See the closure API for more.\n\n"
            "Only one thread at a time.",
        )
    ]
    menu = tmp_path / "Using-libffi.html"
    menu.write_text(
        "<html><body><h2>2 Using libffi</h2><ul><li><a href='b.html'>The Basics</a></li>"
        "<li><a href='s.html'>Simple Example</a></li></ul></body></html>",
        encoding="utf-8",
    )
    with pytest.raises(LoadError, match="only navigation links, no text"):
        load(load_html, menu)


def test_html_in_gb18030(tmp_path: Path) -> None:
    path = tmp_path / "old.htm"
    path.write_bytes(("<html><body><p>" + POLICY + "</p></body></html>").encode("gb18030"))
    [doc] = load(load_html, path).documents
    assert doc.blocks[0].text == POLICY


def test_pdf_pages_and_chinese_text(tmp_path: Path) -> None:
    assert CJK_FONT.exists(), "the CJK test font is installed by .ci/run (fonts-droid-fallback)"
    path = make_pdf(tmp_path / "manual.pdf", [POLICY, "Shipping takes two days to Shanghai."])
    [doc] = load(load_pdf, path).documents
    assert [b.page for b in doc.blocks] == [1, 2]
    assert doc.blocks[0].text == POLICY
    assert doc.blocks[1].text == "Shipping takes two days to Shanghai."


def test_encrypted_pdf_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "secret.pdf", ["secret"], password="pw")
    with pytest.raises(LoadError, match="encrypted PDF"):
        load(load_pdf, path)


def test_pdf_with_empty_user_password_is_read(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "locked.pdf", ["Owner-locked but readable."], password="")
    [doc] = load(load_pdf, path).documents
    assert doc.blocks[0].text == "Owner-locked but readable."


def test_corrupt_pdf_is_refused(tmp_path: Path) -> None:
    good = make_pdf(tmp_path / "good.pdf", ["text"]).read_bytes()
    path = tmp_path / "broken.pdf"
    path.write_bytes(good[: len(good) // 3])
    with pytest.raises(LoadError, match="PDF"):
        load(load_pdf, path)


def test_docx_headings_paragraphs_and_tables(tmp_path: Path) -> None:
    path = make_docx(
        tmp_path / "policy.docx", "售后政策", [("退货", [POLICY]), ("Shipping", ["Two days."])]
    )
    [doc] = load(load_docx, path).documents
    assert doc.title == "售后政策"
    assert [(b.headings, b.text) for b in doc.blocks] == [
        (("退货",), POLICY),
        (("Shipping",), "Two days."),
        (("Shipping",), "城市 | 运费\n上海 | 10元"),
    ]


def test_corrupt_docx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(LoadError, match="DOCX"):
        load(load_docx, path)


def test_jsonl_documents_keep_their_ids_and_report_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    lines = [
        json.dumps({"id": "p1", "title": "退货", "text": POLICY, "source": "wiki"}),
        "{not json",
        json.dumps({"id": "p2", "title": "t"}),
        json.dumps(["a list"]),
        json.dumps({"id": "p1", "text": "duplicate"}),
        "",
        json.dumps({"text": "no id"}),
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    loaded = load(load_jsonl, path)
    assert [d.doc_id for d in loaded.documents] == ["p1", f"{path}#7"]
    assert loaded.documents[0].meta == {"source": "wiki"}
    assert loaded.documents[0].title == "退货"
    assert [p.split(":")[0] for p in loaded.problems] == ["line 2", "line 3", "line 4", "line 5"]
    assert "duplicate id 'p1'" in loaded.problems[3]
