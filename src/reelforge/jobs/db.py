"""One database for the stores: the engine, its session factory and the schema, shared by every aggregate.

The stores (store_jobs.py, store_files.py, store_keys.py, store_webhooks.py) each take a Database, so one
process opens one connection pool however many of them it uses.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched: `Session.execute` is typed as returning a Result, and for these
    statements it is a CursorResult, which carries the count."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected the result of an UPDATE or DELETE, got {type(result).__name__}")
    return result.rowcount


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=20, max_overflow=20)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: readers never block the writer; NORMAL sync is durable across process crashes
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Database:
    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has no SELECT ... FOR UPDATE (its writers are serialised anyway)
        self.row_locks = not url.startswith("sqlite")

    def session(self) -> Session:
        return self._session()

    def migrate(self) -> None:
        """Bring the schema to the latest Alembic revision (creates it on a fresh database)."""
        from reelforge.jobs.migrate import upgrade

        upgrade(self.engine)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()


class _Store:
    """Base of the per-aggregate stores: one Database, sessions from it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.engine = db.engine

    def session(self) -> Session:
        return self.db.session()
