"""The moment the Maildir tests' clock stands at, and a delivery report as Postfix writes one
(from `tests/data/mail`, where every test reads real-world shapes of mail); a Maildir folder's
emails read back, and grouped by recipient."""
import mailbox as stdlib_mailbox
from datetime import datetime, timezone
from email import policy
from email.parser import BytesParser
from pathlib import Path

START = datetime(2024, 6, 4, 9, 30, tzinfo=timezone.utc)

POSTFIX_BOUNCE = (Path(__file__).parents[1] / "data" / "mail" / "bounces" / "postfix-user-unknown.eml").read_text()


def read_folder(root: Path, folder: str) -> list:
    box = stdlib_mailbox.Maildir(root / folder if folder else root, factory=None, create=False)
    parser = BytesParser(policy=policy.default)
    return [parser.parsebytes(box.get_bytes(key)) for key in box.keys()]


def by_recipient(messages) -> dict[str, list]:
    out: dict[str, list] = {}
    for m in messages:
        out.setdefault(str(m["To"].addresses[0].addr_spec), []).append(m)
    return out
