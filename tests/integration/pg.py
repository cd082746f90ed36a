"""A throw-away PostgreSQL database on the local server (127.0.0.1:5432, trust auth) per test module."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def temp_database() -> Iterator[str]:
    name = f"rf_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
