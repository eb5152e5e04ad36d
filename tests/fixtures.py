"""Builders for small real documents of every supported type."""

from __future__ import annotations

from pathlib import Path

CJK_FONT = Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")
LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def make_pdf(path: Path, pages: list[str], *, password: str | None = None) -> Path:
    """A PDF with one text page per item (the fonts are Debian packages .ci/run installs)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_font("latin", fname=str(LATIN_FONT))
    pdf.add_font("cjk", fname=str(CJK_FONT))
    pdf.set_font("latin", size=12)
    pdf.set_fallback_fonts(["cjk"])
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    if password is not None:
        from fpdf.enums import EncryptionMethod

        pdf.set_encryption(
            owner_password="owner",
            user_password=password,
            encryption_method=EncryptionMethod.AES_128,
        )
    pdf.output(str(path))
    return path


def make_docx(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> Path:
    import docx

    document = docx.Document()
    document.add_heading(title, level=0)
    for heading, paragraphs in sections:
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "城市"
    table.cell(0, 1).text = "运费"
    table.cell(1, 0).text = "上海"
    table.cell(1, 1).text = "10元"
    document.save(str(path))
    return path


def _docx_with(path: Path, document_xml: bytes | None = None, zeros: int = 0) -> Path:
    """A real .docx whose word/document.xml is replaced: by ``document_xml``, or by
    ``zeros`` zero bytes (a zip bomb: it packs a thousand times smaller)."""
    import zipfile

    source = make_docx(path.with_suffix(".source.docx"), "t", [("h", ["p"])])
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as bomb:
        for item in original.infolist():
            if item.filename != "word/document.xml":
                bomb.writestr(item, original.read(item))
            elif document_xml is not None:
                bomb.writestr(item, document_xml)
            else:
                info = zipfile.ZipInfo(item.filename)
                info.compress_type = zipfile.ZIP_DEFLATED
                with bomb.open(info, "w", force_zip64=True) as member:
                    block = bytes(1024 * 1024)
                    for _ in range(zeros // len(block)):
                        member.write(block)
    source.unlink()
    return path


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF of the given objects (1 is the catalog), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def broken_files(folder: Path) -> dict[str, str]:
    """One unreadable file of every supported type (and a few hostile ones): name → a word
    the reason given for it must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>"
    deep = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for number in range(2, 20_002):  # a page tree nested 20,000 levels deep
        deep.append(b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % (number + 1))
    deep.append(b"<< /Type /Page /MediaBox [0 0 10 10] >>")
    files: dict[str, tuple[bytes | None, str]] = {
        "empty.txt": (b"", "empty"),
        "binary.txt": (bytes(range(256)) * 64, "binary"),
        "empty.md": (b"   \n", "empty"),
        "nothing.html": (b"<html><body><script>x()</script></body></html>", "text"),
        "corrupt.pdf": (b"%PDF-1.4 not really", "PDF"),
        "pages.pdf": (
            _pdf(
                [
                    b"<< /Type /Catalog /Pages 2 0 R >>",
                    b"<< /Type /Pages /Kids [3 0 R] /Count 200000 >>",
                    page,
                ]
            ),
            "200000 pages",
        ),
        "deep.pdf": (_pdf(deep), "PDF"),
        "lines.jsonl": (b"{not json\n[1, 2]\n", "line 1"),
        "corrupt.docx": (b"PK\x03\x04 not really a zip", "DOCX"),
        "not-closed.docx": (None, "DOCX"),
        "bomb.docx": (None, "zip bomb"),
    }
    for name, (data, _) in files.items():
        if data is not None:
            (folder / name).write_bytes(data)
    _docx_with(folder / "not-closed.docx", document_xml=b"<not-closed")
    _docx_with(folder / "bomb.docx", zeros=256 * 1024 * 1024)
    return {name: word for name, (_, word) in files.items()}
