"""The composition root: settings, database, clock and mailbox connectors wired together."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from cadence.settings import Settings
from core.clock import Clock, SystemClock
from store.db import Database

if TYPE_CHECKING:  # the connectors (and the email modules they load) come with the first mailbox
    from connectors.memory import MemoryServer
    from core.mailbox import Mailbox
    from store.models import MailboxRow  # the ORM comes with the first session, not with the App

PROVIDERS = ("maildir", "gmail", "outlook", "memory")
_MEMORY_SERVER_LOCK = threading.Lock()


class CredentialsError(ValueError):
    """Stored credentials cannot be decrypted with any configured key."""


class MailboxUnusable(Exception):
    """This installation cannot build the mailbox's connector (`reason` says why, for the operator):
    a missing client setting, undecryptable credentials, an unusable Maildir path."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class App:
    """Everything a command, the HTTP server or a worker needs; built once per process."""

    settings: Settings
    db: Database
    clock: Clock = field(default_factory=SystemClock)
    _memory_server: Any = field(default=None, repr=False)
    # Tests and benchmarks may register their own factory per provider.
    mailbox_factories: dict[str, Callable[["App", MailboxRow], Mailbox]] = field(default_factory=dict)
    _cache: dict[int, Mailbox] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, clock: Clock | None = None,
                      upgrade: bool = True) -> "App":
        settings = settings or Settings()
        settings.ensure_home()
        db = Database(settings.resolved_database_url)
        if upgrade:
            db.upgrade()
        return cls(settings=settings, db=db, clock=clock or SystemClock())

    @property
    def memory_server(self) -> "MemoryServer":
        """The in-process provider of `memory` mailboxes (tests, benchmarks, the demo), made on first use."""
        if self._memory_server is None:
            with _MEMORY_SERVER_LOCK:  # a worker's lanes ask from several threads at once
                if self._memory_server is None:
                    from connectors.memory import MemoryServer

                    self._memory_server = MemoryServer()
        return self._memory_server

    # -- credentials -------------------------------------------------------------------------
    def encrypt(self, data: dict) -> bytes:
        return self.settings.fernet.encrypt(json.dumps(data).encode())

    def decrypt(self, token: bytes | None) -> dict:
        if not token:
            return {}
        from cryptography.fernet import InvalidToken

        try:
            return json.loads(self.settings.fernet.decrypt(token))
        except InvalidToken:
            raise CredentialsError("stored credentials cannot be decrypted with CADENCE_SECRET_KEY") from None

    # -- mailboxes ---------------------------------------------------------------------------
    def mailbox(self, row: MailboxRow) -> Mailbox:
        """The connector for a stored mailbox, cached per process (connectors keep tokens warm)."""
        with self._lock:
            cached = self._cache.get(row.id)
            if cached is None:
                factory = self.mailbox_factories.get(row.provider) or DEFAULT_FACTORIES[row.provider]
                try:
                    cached = factory(self, row)
                except CredentialsError as exc:
                    raise MailboxUnusable(str(exc)) from None
                except OSError as exc:
                    raise MailboxUnusable(f"{exc.filename or row.path}: {exc.strerror or exc}") from None
                self._cache[row.id] = cached
            return cached

    def forget_mailbox(self, mailbox_id: int) -> None:
        with self._lock:
            self._cache.pop(mailbox_id, None)


def _maildir(app: App, row: MailboxRow) -> Mailbox:
    from connectors.maildir import MaildirMailbox

    root = Path(row.path or app.settings.maildir_root / row.address)
    try:
        return MaildirMailbox(row.address, root, clock_now=app.clock.now)
    except ValueError as exc:  # the path exists and is not a Maildir folder
        raise MailboxUnusable(str(exc)) from None
    except OSError as exc:
        raise MailboxUnusable(f"maildir path {root}: {exc.strerror or exc}") from None


def _memory(app: App, row: MailboxRow) -> Mailbox:
    from connectors.memory import MemoryMailbox

    return MemoryMailbox(row.address, app.memory_server)


def _gmail(app: App, row: MailboxRow) -> Mailbox:
    from connectors.gmail import GmailMailbox

    s = app.settings
    for value, name in ((s.google_client_id, "CADENCE_GOOGLE_CLIENT_ID"),
                        (s.google_client_secret, "CADENCE_GOOGLE_CLIENT_SECRET")):
        if not value:
            raise MailboxUnusable(f"{name} is not set (see docs/gmail.md)")
    creds = app.decrypt(row.credentials)
    return GmailMailbox(row.address, refresh_token=creds.get("refresh_token"),
                        client_id=s.google_client_id, client_secret=s.google_client_secret,
                        api_url=s.gmail_api_url, token_url=s.google_token_url)


def _outlook(app: App, row: MailboxRow) -> Mailbox:
    from connectors.outlook import OutlookMailbox

    s = app.settings
    if not s.ms_client_id:
        raise MailboxUnusable("CADENCE_MS_CLIENT_ID is not set (see docs/outlook.md)")
    creds = app.decrypt(row.credentials)
    mailbox_id = row.id

    def save_cache(serialized: str) -> None:
        from store.models import MailboxRow as Row

        with app.db.session() as session:
            stored = session.get(Row, mailbox_id)
            data = app.decrypt(stored.credentials)
            data["token_cache"] = serialized
            stored.credentials = app.encrypt(data)

    # A mailbox connected with the device code is a public client: msal refuses a secret for it.
    secret = None if creds.get("public_client") else s.ms_client_secret
    return OutlookMailbox(row.address, client_id=s.ms_client_id, client_secret=secret,
                          authority=s.ms_authority, graph_url=s.graph_api_url,
                          token_cache=creds.get("token_cache"), on_token_cache_change=save_cache,
                          account_username=creds.get("username") or row.address)


DEFAULT_FACTORIES: dict[str, Callable[[App, MailboxRow], Mailbox]] = {
    "maildir": _maildir, "memory": _memory, "gmail": _gmail, "outlook": _outlook,
}
