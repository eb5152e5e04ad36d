"""Uploaded files: where they are stored and what their documents are called.

Embedded, an upload is stored as ``<home>/uploads/<kb>/<upload id>/<cleaned name>``; on
PostgreSQL its bytes are kept in the database. The upload id is a hash of the exact name the
client gave, so two different names never share a file (however
alike they look once cleaned), and the same name uploaded again replaces its file. The
documents of an upload get an opaque id (``upload-<upload id>``) and the given name as their
source: no server path reaches a client, and no client string ever becomes a path — a file
is only ever found again from a name through its hash, and only removed after its resolved
path is checked to be inside the knowledge base's own upload folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path

from starlette.datastructures import UploadFile

from streamrag.ingest.loaders import Origin
from streamrag.names import check_kb_name

_UNSAFE = re.compile(r"[^\w.\- ()\[\]+,@]")


def clean_name(filename: str) -> str:
    """A file name that is one harmless path component, keeping letters of any script."""
    name = unicodedata.normalize("NFC", filename.replace("\\", "/").rsplit("/", 1)[-1])
    name = _UNSAFE.sub("_", "".join(c for c in name if c.isprintable())).strip(" .")
    stem, suffix = os.path.splitext(name)
    return (stem[:100] or "upload") + suffix[:16]


def upload_id(filename: str) -> str:
    """The opaque id of an upload: a hash of the exact name it was given."""
    return hashlib.sha256(filename.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def stored_origin(filename: str) -> Origin:
    """What the documents of an upload named ``filename`` are recorded as."""
    return Origin(f"upload-{upload_id(filename)}", filename, Path(clean_name(filename)).stem)


class UploadFolders:
    """The embedded :class:`~streamrag.backends.Uploads`: each knowledge base's uploaded
    files in ``<root>/<kb>/``, ingested from where they are kept."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()  # resolved like the paths the ingest reads

    def save(self, kb: str, files: list[UploadFile]) -> dict[Path, Origin]:
        """Store the uploads (each written whole, then renamed into place)."""
        origins: dict[Path, Origin] = {}
        for file in files:
            given = file.filename or ""
            target = write_upload(self._folder(kb, given), file)
            origins[target] = stored_origin(given)
        return origins

    def release(self, origins: dict[Path, Origin]) -> None:
        """Nothing to do: the files are kept where they were ingested from."""

    def discard(self, kb: str, filename: str) -> bool:
        """Remove the stored file of the upload named ``filename``; False if there is none."""
        folder = self._folder(kb, filename)
        if not folder.is_dir():
            return False
        shutil.rmtree(folder)
        return True

    def drop(self, kb: str) -> None:
        """Remove every upload of the knowledge base."""
        shutil.rmtree(self._kb_folder(kb), ignore_errors=True)

    def _kb_folder(self, kb: str) -> Path:
        return self.root / check_kb_name(kb)

    def _folder(self, kb: str, filename: str) -> Path:
        base = self._kb_folder(kb)
        folder = (base / upload_id(filename)).resolve()
        if folder.parent != base:  # cannot happen with a hex id; checked all the same
            raise ValueError(f"upload folder {folder} is outside {base}")
        return folder


def write_upload(folder: Path, file: UploadFile) -> Path:
    """Write an upload's bytes into ``folder`` as its cleaned name (whole, then renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as part:
        file.file.seek(0)
        shutil.copyfileobj(file.file, part)
    target = folder / clean_name(file.filename or "")
    os.replace(part.name, target)
    return target
