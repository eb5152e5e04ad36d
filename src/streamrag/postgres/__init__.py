"""The PostgreSQL backend (``STREAMRAG_DATABASE_URL=postgresql://…``): knowledge bases,
sessions, run records, run events and uploaded files in one database with pgvector, shared by
any number of replicas on any number of machines.

Uploaded files' bytes are kept in the database (``uploads``) rather than in a shared
directory: the replicas then share nothing but the database and Redis, a file and its
documents are removed in the same place, and a backup of the database is a backup of
everything. The replica that takes an upload ingests it from a local copy (``<home>/spool``)
that goes once the ingest has ended.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from starlette.datastructures import UploadFile

from streamrag.history.sql import SQLHistory
from streamrag.ingest.loaders import Origin
from streamrag.names import check_kb_name
from streamrag.postgres.database import PostgresDatabase, QmarkDatabase
from streamrag.postgres.store import PostgresCatalog
from streamrag.uploads import stored_origin, upload_id, write_upload


class PostgresUploads:
    """Uploaded files in the ``uploads`` table, keyed by knowledge base and upload id."""

    def __init__(self, database: PostgresDatabase, spool: Path) -> None:
        self.database = database
        self.spool = spool

    def save(self, kb: str, files: list[UploadFile]) -> dict[Path, Origin]:
        """Keep each upload's bytes, and a local copy to ingest it from."""
        check_kb_name(kb)
        self.spool.mkdir(parents=True, exist_ok=True)
        batch = Path(tempfile.mkdtemp(dir=self.spool)).resolve()
        origins: dict[Path, Origin] = {}
        with self.database.transaction() as db:
            for file in files:
                given = file.filename or ""
                target = write_upload(batch / upload_id(given), file)
                db.execute(
                    "INSERT INTO uploads (kb, upload_id, name, data) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (kb, upload_id) DO UPDATE SET data = excluded.data,"
                    " uploaded_at = now()",
                    (kb, upload_id(given), given, target.read_bytes()),
                )
                origins[target] = stored_origin(given)
        return origins

    def release(self, origins: dict[Path, Origin]) -> None:
        """Remove the local copies (their batch folder) once their ingest has ended."""
        for path in origins:
            batch = path.parent.parent
            if batch.parent == self.spool.resolve():
                shutil.rmtree(batch, ignore_errors=True)

    def discard(self, kb: str, filename: str) -> bool:
        with self.database.connection() as db:
            cursor = db.execute(
                "DELETE FROM uploads WHERE kb = %s AND upload_id = %s", (kb, upload_id(filename))
            )
        return cursor.rowcount > 0

    def drop(self, kb: str) -> None:
        with self.database.connection() as db:
            db.execute("DELETE FROM uploads WHERE kb = %s", (kb,))


class PostgresBackend:
    """Everything in one PostgreSQL database; its schema is brought up to date on open."""

    def __init__(self, url: str, home: Path) -> None:
        self.database = PostgresDatabase(url)
        self.applied = self.database.upgrade()
        self.database.open()
        self.catalog = PostgresCatalog(self.database)
        self.history = SQLHistory(QmarkDatabase(self.database))
        self.uploads = PostgresUploads(self.database, home / "spool")

    def upgrade(self) -> list[str]:
        """Apply pending migrations; those applied since this backend opened (opening
        applies them too)."""
        self.applied += self.database.upgrade()
        return self.applied

    def close(self) -> None:
        self.database.close()
