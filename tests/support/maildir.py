"""The moment the Maildir tests' clock stands at, and a delivery report as Postfix writes one
(from `tests/data/mail`, where every test reads real-world shapes of mail)."""
from datetime import datetime, timezone
from pathlib import Path

START = datetime(2024, 6, 4, 9, 30, tzinfo=timezone.utc)

POSTFIX_BOUNCE = (Path(__file__).parents[1] / "data" / "mail" / "bounces" / "postfix-user-unknown.eml").read_text()
