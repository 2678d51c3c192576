"""Where the test PostgreSQL is (127.0.0.1:5432, user postgres, trust, database `test`); each test
gets a schema of its own there (see the `database_url` fixture of tests/conftest.py)."""
from __future__ import annotations

import os

PG_DSN = os.environ.get("CADENCE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test")
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
