"""What the end-to-end tests share: the rep whose Gmail or Outlook mailbox the fakes serve (the
fixtures are in tests/e2e/conftest.py)."""
from __future__ import annotations

REP = "rep@example.com"
