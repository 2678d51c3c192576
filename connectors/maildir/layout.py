"""Files of a Maildir++ tree: INBOX is the root (cur/new/tmp), folders are `.Name` beside it.

Every write goes through `tmp/` and one atomic rename, as the Maildir protocol asks, so a mail
client or delivery agent working on the same tree never sees half a message. A message's key is
the part of its file name before `:2,FLAGS`; moving a file between `new/` and `cur/` or changing
its flags keeps the key.
"""
from __future__ import annotations

import itertools
import os
import socket
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path

from core.email.folding import MAIL_POLICY
from core.email.read import utf8_headers

DRAFTS = ".Drafts"
SENT = ".Sent"
INFO_SEPARATOR = ":2,"
_counter = itertools.count(1)


def ensure_maildir(path: Path) -> None:
    """Create `path` with cur/new/tmp when missing; `ValueError` when `path` is not a folder."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"maildir path {path} exists and is not a directory")
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)


def ensure_tree(root: Path) -> None:
    """The INBOX at `root` and the `.Drafts` and `.Sent` folders (with their `maildirfolder`)."""
    ensure_maildir(root)
    for folder in (DRAFTS, SENT):
        ensure_maildir(root / folder)
        (root / folder / "maildirfolder").touch(exist_ok=True)


def new_key() -> str:
    """A unique file name: `seconds.M<micros>P<pid>Q<n>R<random>.<host>` (Maildir convention)."""
    now = time.time()
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072") or "localhost"
    return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}R{os.urandom(4).hex()}.{host}"


def split_name(name: str) -> tuple[str, str]:
    """`key:2,FLAGS` -> (key, FLAGS); a name without info has no flags."""
    key, sep, flags = name.partition(INFO_SEPARATOR)
    if not sep:
        key = name.partition(":")[0]
    return key, flags


def file_name(key: str, flags: str) -> str:
    return f"{key}{INFO_SEPARATOR}{''.join(sorted(set(flags)))}"


def message_files(folder: Path) -> dict[str, Path]:
    """Key -> file of every message in `folder`. Lists `new/` before `cur/`, so a message a
    client moves from new to cur meanwhile is still listed once."""
    found: dict[str, Path] = {}
    for sub in ("new", "cur"):
        try:
            names = os.listdir(folder / sub)
        except FileNotFoundError:
            continue
        for name in names:
            if name.startswith("."):
                continue
            found[split_name(name)[0]] = folder / sub / name
    return found


def find_file(folder: Path, key: str) -> Path | None:
    """The current file of message `key` in `folder` (either subdir, any flags), or None."""
    for sub in ("cur", "new"):
        try:
            names = os.listdir(folder / sub)
        except FileNotFoundError:
            continue
        for name in names:
            if split_name(name)[0] == key:
                return folder / sub / name
    return None


def to_bytes(message: EmailMessage) -> bytes:
    """The message as file bytes: LF line ends, headers folded at 78 columns by MAIL_POLICY (a
    re-written file, such as a sent message given its send time, keeps List-Unsubscribe's URIs
    whole instead of turning a long one into encoded words)."""
    return message.as_bytes(policy=MAIL_POLICY)


def write_tmp(folder: Path, data: bytes, key: str) -> Path:
    """Write `data` durably into `folder/tmp/` under a fresh name and return that path."""
    path = folder / "tmp" / f"{key}.{os.urandom(4).hex()}"
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def write_message(folder: Path, data: bytes, *, flags: str = "", key: str | None = None) -> tuple[str, Path]:
    """Store a message in `folder/cur/` with `flags` through tmp + rename; returns (key, path)."""
    key = key or new_key()
    target = folder / "cur" / file_name(key, flags)
    temporary = write_tmp(folder, data, key)
    os.rename(temporary, target)
    return key, target


def read_message(path: Path, *, headers_only: bool = False) -> EmailMessage:
    """Parse a message file (core.email.folding.MAIL_POLICY), raw 8-bit header bytes read as UTF-8
    (core.email.read.utf8_headers); `FileNotFoundError` when it moved meanwhile."""
    with open(path, "rb") as handle:
        if headers_only:
            return utf8_headers(BytesHeaderParser(policy=policy.default).parse(handle))  # type: ignore[return-value]
        return utf8_headers(BytesParser(policy=MAIL_POLICY).parse(handle))  # type: ignore[return-value]
