"""`MaildirMailbox`: the embedded default `Mailbox`, a Maildir++ tree on disk, no credentials.

Layout: INBOX is `root` itself (cur/new/tmp), drafts live in `.Drafts` (flag D), sent mail in
`.Sent` (flag S); every message is a real RFC 5322 file, so Thunderbird, mutt or neomutt opened
on `root` show exactly what Cadence wrote. "Sending" means moving the draft into `.Sent` (and,
when `deliver_to` is given, dropping a copy into that Maildir's `new/`, so the recipients' side
can be looked at too); nothing leaves the machine.

Keys: a message's maildir key (its file name before `:2,`) is its `draft_id` and
`provider_message_id`; a sent draft keeps its key. The provider thread id is the Message-ID the
conversation starts with (first of References, else the message's own Message-ID).

Polling reports new files in INBOX (`new/` and `cur/`) and `.Sent`. Messages are left where they
are (INBOX `new/` is not moved to `cur/`): the rep's own mail client should still show them as
new, and the cursor does not depend on where a file sits.
"""
from __future__ import annotations

import contextlib
import json
import logging
import mailbox as stdlib_mailbox
import os
from dataclasses import replace
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Callable, Collection, Iterator

from core.email import read as mime_read
from core.email.observe import observe_message
from core.email.compose import build_message, replace_content
from core.email.message_id import first_message_id, is_message_id
from core.headers import check_header_value
from connectors.maildir import layout
from core.mailbox import (
    DraftNotFound,
    DraftRef,
    Folder,
    ObservedMessage,
    OutgoingEmail,
    PollResult,
    ProviderLimits,
    SendCheck,
    SendStatus,
    SentRef,
    TransientError,
)

log = logging.getLogger(__name__)
_CURSOR_VERSION = 1
_POLLED = (("sent", Folder.SENT), ("inbox", Folder.INBOX))


def _system_now() -> datetime:
    return datetime.now(timezone.utc)


class MaildirMailbox:
    """`Mailbox` over the Maildir++ tree at `root` (created when missing).

    `clock_now` stamps Date headers and sent times (default: system time, UTC). `deliver_to`,
    when given, is a Maildir that receives a copy of every sent message in its `new/`.
    `DraftRef.web_link` is the `file://` URL of the draft file at the time it was written; a
    mail client that changes the draft's flags renames the file, so the link can go stale.
    """

    limits = ProviderLimits()

    def __init__(self, address: str, root: Path | str, *, clock_now: Callable[[], datetime] | None = None,
                 deliver_to: Path | str | None = None):
        if not isinstance(address, str) or "@" not in address or any(c.isspace() for c in address):
            raise ValueError(f"address must be an email address, got {address!r}")
        self.address = address
        self.root = Path(root).expanduser().resolve()
        self.deliver_to = Path(deliver_to).expanduser().resolve() if deliver_to is not None else None
        self._now = clock_now or _system_now
        layout.ensure_tree(self.root)
        if self.deliver_to is not None:
            layout.ensure_maildir(self.deliver_to)

    @property
    def drafts_dir(self) -> Path:
        return self.root / layout.DRAFTS

    @property
    def sent_dir(self) -> Path:
        return self.root / layout.SENT

    @property
    def inbox_dir(self) -> Path:
        return self.root

    # ------------------------------------------------------------------ drafts and sending

    def create_draft(self, email: OutgoingEmail) -> DraftRef:
        email = _rooted(email)
        message = build_message(email, date=self._now())
        with _io(f"writing a draft into {self.drafts_dir}"):
            key, path = layout.write_message(self.drafts_dir, layout.to_bytes(message), flags="D")
        references = email.references
        return DraftRef(
            draft_id=key,
            message_id=email.message_id,
            provider_message_id=key,
            provider_thread_id=references[0] if references else email.message_id,
            web_link=path.as_uri(),
        )

    def update_draft(self, draft: DraftRef, *, subject: str, html_body: str, text_body: str) -> DraftRef:
        check_header_value("Subject", subject)
        with _io(f"updating draft {draft.draft_id}"):
            path = self._find_draft(draft)
            if path is None:
                raise DraftNotFound(f"draft {draft.draft_id} is not in {self.drafts_dir}")
            key, flags = layout.split_name(path.name)
            # Claim the draft by moving it out of sight first: if the rep sends or deletes it
            # meanwhile, the rename fails and the update never resurrects a sent draft.
            claimed = self.drafts_dir / "tmp" / f"{key}.editing.{os.urandom(4).hex()}"
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                raise DraftNotFound(f"draft {draft.draft_id} left {self.drafts_dir} meanwhile") from None
            try:
                fresh = replace_content(layout.read_message(claimed), subject=subject,
                                             text_body=text_body, html_body=html_body, date=self._now())
                _, new_path = layout.write_message(self.drafts_dir, layout.to_bytes(fresh),
                                                   flags=flags or "D", key=key)
            except BaseException:
                os.rename(claimed, path)
                raise
            os.unlink(claimed)
        return replace(draft, draft_id=key, provider_message_id=key, web_link=new_path.as_uri())

    def delete_draft(self, draft: DraftRef) -> None:
        with _io(f"deleting draft {draft.draft_id}"):
            path = self._find_draft(draft)
            if path is not None:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def find_drafts(self, message_id: str) -> list[DraftRef]:
        """Drafts with this Message-ID, oldest file first (by modification time)."""
        wanted = message_id.strip().strip("<>")
        found = []
        with _io(f"looking for drafts of {message_id}"):
            for key, path in layout.message_files(self.drafts_dir).items():
                headers = _headers_or_none(path)
                if headers is None:
                    continue
                own = first_message_id(mime_read.header_text(headers, "Message-ID"))
                if own is None or own.strip("<>") != wanted:
                    continue
                try:
                    mtime = path.stat().st_mtime
                except FileNotFoundError:
                    continue  # sent or deleted while we looked
                found.append((mtime, key, DraftRef(draft_id=key, message_id=own, provider_message_id=key,
                                                   provider_thread_id=mime_read.thread_root(headers) or own,
                                                   web_link=path.as_uri())))
        return [ref for _, _, ref in sorted(found, key=lambda item: item[:2])]

    def send_draft(self, draft: DraftRef) -> SentRef:
        with _io(f"sending draft {draft.draft_id}"):
            path = self._find_draft(draft)
            if path is None:
                raise DraftNotFound(f"draft {draft.draft_id} is not in {self.drafts_dir}")
            key, flags = layout.split_name(path.name)
            target = self.sent_dir / "cur" / layout.file_name(key, (set(flags) - {"D"}) | {"S"})
            # This rename is the send: atomic, so two senders of one draft cannot both win.
            try:
                os.rename(path, target)
            except FileNotFoundError:
                raise DraftNotFound(f"draft {draft.draft_id} left {self.drafts_dir} meanwhile") from None
        sent_at = self._now()
        message = self._restamp(target, key, sent_at)
        if message is not None and self.deliver_to is not None:
            self._deliver_copy(message)
        root = mime_read.thread_root(message) if message is not None else None
        return SentRef(message_id=draft.message_id, provider_message_id=key,
                       provider_thread_id=root or draft.provider_thread_id, sent_at=sent_at)

    def _restamp(self, target: Path, key: str, sent_at: datetime) -> EmailMessage | None:
        """Set the Date of a just-sent message to the send time (atomic replace of the file).
        The send already happened, so a failure here is logged, not raised."""
        try:
            message = layout.read_message(target)
            if "Date" in message:
                message.replace_header("Date", format_datetime(sent_at))
            else:
                message["Date"] = format_datetime(sent_at)
            os.replace(layout.write_tmp(self.sent_dir, layout.to_bytes(message), key), target)
            return message
        except OSError as failure:
            log.warning("sent %s but could not set its Date: %s", target, failure)
            try:
                return layout.read_message(target)
            except OSError:
                return None

    def _deliver_copy(self, message: EmailMessage) -> None:
        try:
            stdlib_mailbox.Maildir(self.deliver_to, create=True).add(layout.to_bytes(message))
        except OSError as failure:
            log.warning("sent but could not deliver a copy into %s: %s", self.deliver_to, failure)

    def check_sent(self, message_id: str, draft: DraftRef | None) -> SendStatus:
        with _io(f"checking whether {message_id} was sent"):
            sent_files = layout.message_files(self.sent_dir)
            candidates = []
            if draft is not None and draft.draft_id in sent_files:
                candidates.append((draft.draft_id, sent_files[draft.draft_id]))
            candidates.extend(sent_files.items())
            for key, path in candidates:
                headers = _headers_or_none(path)
                if headers is None:
                    continue
                found_id = first_message_id(mime_read.header_text(headers, "Message-ID"))
                if found_id == message_id or (found_id is None and draft is not None and key == draft.draft_id):
                    sent = SentRef(message_id=message_id, provider_message_id=key,
                                   provider_thread_id=mime_read.thread_root(headers) or message_id,
                                   sent_at=mime_read.message_date(headers))
                    return SendStatus(SendCheck.SENT, sent, detail=f"in {self.sent_dir} as {key}")
            still_draft = (self._find_draft(draft) if draft is not None
                           else self._find_by_message_id(self.drafts_dir, message_id))
        if still_draft is not None:
            return SendStatus(SendCheck.NOT_SENT, detail="the draft is still in Drafts")
        if draft is None:
            return SendStatus(SendCheck.NOT_SENT, detail="no draft and nothing in Sent with that Message-ID")
        return SendStatus(SendCheck.UNKNOWN, detail="the draft is gone and nothing in Sent has its Message-ID")

    def _find_draft(self, draft: DraftRef) -> Path | None:
        """The draft's file by key; else by Message-ID, since a mail client that re-saves a
        draft writes it under a new key but keeps its Message-ID."""
        path = layout.find_file(self.drafts_dir, draft.draft_id)
        return path or self._find_by_message_id(self.drafts_dir, draft.message_id)

    def _find_by_message_id(self, folder: Path, message_id: str) -> Path | None:
        for path in layout.message_files(folder).values():
            headers = _headers_or_none(path)
            if headers is not None and first_message_id(mime_read.header_text(headers, "Message-ID")) == message_id:
                return path
        return None

    # ------------------------------------------------------------------ polling

    def poll(self, cursor: str | None, tracked_threads: Collection[str] = ()) -> PollResult:
        """New files in `.Sent` and INBOX since `cursor`.

        The cursor holds, per folder, the keys already reported and still present, plus the
        keys that went missing at the previous poll (kept once more, so a file a client was
        renaming while we listed is not reported again). A key is never reported twice while
        its file stays in the folder, wherever it moves between `new/` and `cur/` and whatever
        its flags or mtime. The cursor grows with the number of messages in INBOX and Sent.
        A Maildir cursor never expires, so `tracked_threads` is not needed and `resynced` is
        always False.
        """
        folders = {"sent": self.sent_dir, "inbox": self.inbox_dir}
        with _io(f"polling {self.root}"):
            listing = {name: layout.message_files(folders[name]) for name, _ in _POLLED}
            if cursor is None:
                state = {name: (set(files), set()) for name, files in listing.items()}
                return PollResult((), _encode_cursor(state))
            previous = _decode_cursor(cursor)
            observations: list[ObservedMessage] = []
            state = {}
            for name, folder in _POLLED:
                files = listing[name]
                seen, gone = previous[name]
                known = seen | gone
                reported = set()
                for key in sorted(set(files) - known):
                    try:
                        observed = self._observe(folder, name, folders[name], key, files[key])
                    except Exception as failure:  # noqa: BLE001 - one bad file never blocks the mailbox
                        log.warning("skipped %s, it cannot be read as a message: %s: %s", files[key],
                                    type(failure).__name__, failure)
                        reported.add(key)
                        continue
                    if observed is not None:  # None: vanished or unreadable; tried again next poll
                        observations.append(observed)
                        reported.add(key)
                state[name] = ((known & set(files)) | reported, seen - set(files))
        observations.sort(key=lambda o: (o.received_at or datetime.min.replace(tzinfo=timezone.utc),
                                         o.provider_message_id))
        return PollResult(tuple(observations), _encode_cursor(state))

    def _observe(self, folder: Folder, folder_name: str, folder_dir: Path, key: str,
                 path: Path) -> ObservedMessage | None:
        for _ in range(2):
            try:
                message = layout.read_message(path)
                mtime = path.stat().st_mtime
                break
            except FileNotFoundError:
                moved = layout.find_file(folder_dir, key)
                if moved is None:
                    return None
                path = moved
            except OSError as failure:  # unreadable: retried at every poll, others go on
                log.warning("cannot read %s: %s", path, failure)
                return None
        else:
            return None
        return observe_message(message, folder, key, received_at=datetime.fromtimestamp(mtime, timezone.utc),
                               raw={"path": str(path), "key": key, "folder": folder_name,
                                    "headers": mime_read.all_headers(message)})


def _rooted(email: OutgoingEmail) -> OutgoingEmail:
    """Put the conversation's first Message-ID (our provider thread id) at the head of the
    References chain when the caller's `ThreadRef` lacks it, so every message of a thread
    names the same root and observations land in the same conversation."""
    ref = email.reply_to
    if ref is None or not ref.provider_thread_id or not is_message_id(ref.provider_thread_id):
        return email
    if ref.provider_thread_id in email.references:
        return email
    return replace(email, reply_to=replace(ref, references=(ref.provider_thread_id,) + tuple(ref.references)))


def _headers_or_none(path: Path) -> EmailMessage | None:
    try:
        return layout.read_message(path, headers_only=True)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _io(doing: str) -> Iterator[None]:
    """Turn an unexpected OSError (permissions, disk full) into a `TransientError` naming the step."""
    try:
        yield
    except OSError as failure:
        raise TransientError(f"maildir I/O failed while {doing}: {failure}") from failure


def _encode_cursor(state: dict[str, tuple[set[str], set[str]]]) -> str:
    body = {name: {"seen": sorted(seen), "gone": sorted(gone)} for name, (seen, gone) in state.items()}
    return json.dumps({"v": _CURSOR_VERSION, "maildir": body}, separators=(",", ":"))


def _decode_cursor(cursor: str) -> dict[str, tuple[set[str], set[str]]]:
    try:
        data = json.loads(cursor)
        if data["v"] != _CURSOR_VERSION:
            raise ValueError("unknown version")
        state = {}
        for name, _ in _POLLED:
            entry = data["maildir"][name]
            seen, gone = entry["seen"], entry["gone"]
            if not all(isinstance(k, str) for k in [*seen, *gone]):
                raise ValueError("keys must be strings")
            state[name] = (set(seen), set(gone))
        return state
    except (ValueError, KeyError, TypeError) as bad:
        raise ValueError(f"cursor is not a maildir poll cursor ({bad})") from None

