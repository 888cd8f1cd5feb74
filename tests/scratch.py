"""A database of a test's own that other processes can open: a SQLite file, or a PostgreSQL
database created for the test and dropped after it, migrated by ``kehu migrate`` in a subprocess.

The test run's own database cannot serve: SQLite tests run in memory, and the PostgreSQL test
database holds each test's rows in an uncommitted transaction that no other process sees.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings

REPO_ROOT = Path(__file__).resolve().parents[1]
KEHU = str(Path(sys.executable).with_name("kehu"))


def postgres_server() -> dict[str, Any]:
    """The PostgreSQL server of this test run, or the one `make test` uses."""
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("postgresql"):
        return {
            "host": database["HOST"] or "127.0.0.1",
            "port": int(database["PORT"] or 5432),
            "user": database["USER"] or "postgres",
            "password": database["PASSWORD"] or None,
        }
    parts = urlsplit(os.environ.get("KEHU_TEST_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/kehu")
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": parts.username or "postgres",
        "password": parts.password or None,
    }


def environment_for(data_dir: Path, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a Kehu process on that database, nothing inherited from KEHU_*."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith(("KEHU_", "DJANGO_"))
    }
    environment.update(
        KEHU_DATA_DIR=str(data_dir),
        KEHU_DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="kehu.settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])),
        **extra,
    )
    return environment


@contextlib.contextmanager
def scratch_database(data_dir: Path, vendor: str, name: str, **extra: str) -> Iterator[dict[str, str]]:
    """A migrated database of ``vendor`` ("sqlite" or "postgresql"), as the environment pointing
    at it; PostgreSQL unreachable skips the test."""
    data_dir.mkdir(parents=True, exist_ok=True)
    admin = None
    if vendor == "sqlite":
        url = f"sqlite:///{data_dir / 'kehu.sqlite3'}"
    else:
        import psycopg

        server = postgres_server()
        try:
            admin = psycopg.connect(**server, dbname="postgres", autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as error:
            pytest.skip(f"PostgreSQL not reachable: {error}")
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        password = f":{server['password']}" if server["password"] else ""
        url = f"postgres://{server['user']}{password}@{server['host']}:{server['port']}/{name}"
    environment = environment_for(data_dir, url, **extra)
    try:
        migrated = subprocess.run(  # noqa: S603 -- our own console script
            [KEHU, "migrate", "--no-input", "-v", "0"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stderr
        yield environment
    finally:
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()


def query(environment: dict[str, str], sql: str) -> list[tuple[Any, ...]]:
    """Rows of one statement on that database, through a connection of the test's own."""
    url = environment["KEHU_DATABASE_URL"]
    if url.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)) as database:
            return list(database.execute(sql).fetchall())
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as database:
        return list(database.execute(sql).fetchall())


def execute(environment: dict[str, str], sql: str) -> None:
    """One statement that changes that database, committed."""
    url = environment["KEHU_DATABASE_URL"]
    if url.startswith("sqlite:///"):
        import sqlite3

        database = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        try:
            with database:  # commits
                database.execute(sql)
        finally:
            database.close()
        return
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as database:
        database.execute(sql)


def kehu(environment: dict[str, str], *arguments: str, timeout: float = 300) -> str:
    """Run ``kehu ARGUMENTS`` on that database; its standard output (a failure fails the test)."""
    completed = subprocess.run(  # noqa: S603 -- our own console script
        [KEHU, *arguments], env=environment, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout
