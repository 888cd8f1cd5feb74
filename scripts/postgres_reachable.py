"""Exit 0 when the PostgreSQL server behind a database URL accepts connections."""

import sys
from urllib.parse import urlsplit

import psycopg


def main() -> int:
    parts = urlsplit(sys.argv[1])
    try:
        # The maintenance database: the test run creates its own test_<name> database.
        psycopg.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.OperationalError as error:
        print(f"PostgreSQL not reachable: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
