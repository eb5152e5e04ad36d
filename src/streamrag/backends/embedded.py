"""The embedded backend: one SQLite file per knowledge base and one for the history, the
uploads as files, all under the data directory. Nothing to start."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from streamrag.history.sqlite import SQLiteHistory
from streamrag.names import check_kb_name
from streamrag.records import KnowledgeBaseInfo
from streamrag.retrieve.tuning import describe
from streamrag.store.sqlite import SQLiteStore
from streamrag.uploads import UploadFolders


class FileCatalog:
    """Knowledge bases as ``<root>/<name>.sqlite``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def path(self, name: str) -> Path:
        return self.root / f"{check_kb_name(name)}.sqlite"

    def list(self) -> list[KnowledgeBaseInfo]:
        infos = []
        for path in sorted(self.root.glob("*.sqlite")):
            store = SQLiteStore(path)
            try:
                documents, chunks = store.count()
                stats = [p.stat() for p in path.parent.glob(path.name + "*")]
                infos.append(
                    KnowledgeBaseInfo(
                        name=path.stem,
                        location=str(path),
                        documents=documents,
                        chunks=chunks,
                        embed_model=store.get_meta("embed_model"),
                        fusion=describe(store.get_meta("fusion")),
                        size_bytes=sum(stat.st_size for stat in stats),
                        updated_at=datetime.fromtimestamp(
                            max(stat.st_mtime for stat in stats), UTC
                        ).isoformat(timespec="seconds"),
                    )
                )
            finally:
                store.close()
        return infos

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def open(self, name: str) -> SQLiteStore:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(path)

    def drop(self, name: str) -> bool:
        path = self.path(name)
        existed = path.exists()
        for suffix in ("-wal", "-shm", ""):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return existed


class EmbeddedBackend:
    """Everything in files under ``home``."""

    def __init__(self, home: Path) -> None:
        self.catalog = FileCatalog(home / "kb")
        self.history = SQLiteHistory(home / "history.sqlite")
        self.uploads = UploadFolders(home / "uploads")

    def upgrade(self) -> list[str]:
        """Nothing to apply: each SQLite file brings its own schema up to date when opened."""
        return []

    def close(self) -> None:
        self.history.close()
