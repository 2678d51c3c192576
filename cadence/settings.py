"""Operator settings from the environment and `.env` (see the interface page).

Every setting is read here and nowhere else. A bad value is refused when the settings are loaded
(`load_settings`), with one sentence naming the variable (`SettingsError`).
"""
from __future__ import annotations

import base64
import binascii
import os
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cadence.services.errors import UserError

if TYPE_CHECKING:  # cryptography is loaded only by the commands that encrypt or sign
    from cryptography.fernet import MultiFernet

# Dialects (and drivers) Cadence is built and tested for; anything else fails later and obscurely.
DATABASE_URL = re.compile(r"^(sqlite(\+pysqlite)?|postgresql(\+psycopg)?)://", re.IGNORECASE)
FERNET_HINT = ("make one with `python -c 'from cryptography.fernet import Fernet; "
               "print(Fernet.generate_key().decode())'`")


class SettingsError(UserError):
    """A setting with a value Cadence cannot use; the message names the variable."""


def hide_password(url: str) -> str:
    """`scheme://user:secret@host/db` → `scheme://user:***@host/db` (for messages)."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def is_fernet_key(key: str) -> bool:
    """True when `key` is 32 bytes of URL-safe base64, what `cryptography.fernet.Fernet` accepts."""
    try:
        return len(base64.urlsafe_b64decode(key.encode("ascii"))) == 32
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False


def _positive_number(name: str, value, *, integer: bool = False):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = int(str(value).strip()) if integer else float(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a {'whole ' if integer else ''}number") from None
    if number <= 0:
        raise ValueError(f"must be greater than 0, got {value!r}")
    return number


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    home: Path = Field(default=Path("./.cadence"), validation_alias="CADENCE_HOME")
    database_url: str | None = Field(default=None, validation_alias="CADENCE_DATABASE_URL")
    secret_key: str | None = Field(default=None, validation_alias="CADENCE_SECRET_KEY")
    public_url: str = Field(default="http://127.0.0.1:8080", validation_alias="CADENCE_PUBLIC_URL")
    timezone: str = Field(default="UTC", validation_alias="CADENCE_TIMEZONE")
    gmail_api_url: str = Field(default="https://gmail.googleapis.com/", validation_alias="CADENCE_GMAIL_API_URL")
    google_token_url: str = Field(default="https://oauth2.googleapis.com/token", validation_alias="CADENCE_GOOGLE_TOKEN_URL")
    google_auth_url: str | None = Field(default=None, validation_alias="CADENCE_GOOGLE_AUTH_URL")
    google_client_id: str | None = Field(default=None, validation_alias="CADENCE_GOOGLE_CLIENT_ID")
    google_client_secret: str | None = Field(default=None, validation_alias="CADENCE_GOOGLE_CLIENT_SECRET")
    google_jwks_url: str = Field(default="https://www.googleapis.com/oauth2/v3/certs",
                                 validation_alias="CADENCE_GOOGLE_JWKS_URL")
    graph_api_url: str = Field(default="https://graph.microsoft.com/v1.0", validation_alias="CADENCE_GRAPH_API_URL")
    ms_authority: str = Field(default="https://login.microsoftonline.com/common", validation_alias="CADENCE_MS_AUTHORITY")
    ms_client_id: str | None = Field(default=None, validation_alias="CADENCE_MS_CLIENT_ID")
    ms_client_secret: str | None = Field(default=None, validation_alias="CADENCE_MS_CLIENT_SECRET")
    slack_bot_token: str | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias="CADENCE_SLACK_API_URL")
    # A preparation's overall time budget, in seconds; its lease is the worker's lease_seconds below.
    prepare_budget_seconds: float = Field(default=3600.0, gt=0, validation_alias="CADENCE_PREPARE_BUDGET")
    salesforce_login_url: str = Field(default="https://login.salesforce.com",
                                      validation_alias="CADENCE_SALESFORCE_LOGIN_URL")
    salesforce_client_id: str | None = Field(default=None, validation_alias="CADENCE_SALESFORCE_CLIENT_ID")
    salesforce_client_secret: str | None = Field(default=None, validation_alias="CADENCE_SALESFORCE_CLIENT_SECRET")
    # Additions: the clock of any command, tracebacks for the operator, tuning of batches.
    now: str | None = Field(default=None, validation_alias="CADENCE_NOW")
    debug: bool = Field(default=False, validation_alias="CADENCE_DEBUG")
    prepare_batch: int | None = Field(default=None, validation_alias="CADENCE_PREPARE_BATCH")
    # Worker tuning (docs/workers.md): seconds, or counts; unset means the built-in default.
    lease_seconds: float | None = Field(default=None, validation_alias="CADENCE_LEASE_SECONDS")
    claim_batch: int | None = Field(default=None, validation_alias="CADENCE_CLAIM_BATCH")
    send_threads: int | None = Field(default=None, validation_alias="CADENCE_SEND_THREADS")
    slot_wait: float | None = Field(default=None, validation_alias="CADENCE_SLOT_WAIT")
    retry_base_seconds: float | None = Field(default=None, validation_alias="CADENCE_RETRY_BASE_SECONDS")
    dispatch_interval: float | None = Field(default=None, validation_alias="CADENCE_DISPATCH_INTERVAL")
    sync_interval: float | None = Field(default=None, validation_alias="CADENCE_SYNC_INTERVAL")
    reconcile_interval: float | None = Field(default=None, validation_alias="CADENCE_RECONCILE_INTERVAL")
    kpi_interval: float | None = Field(default=None, validation_alias="CADENCE_KPI_INTERVAL")
    digest_interval: float | None = Field(default=None, validation_alias="CADENCE_DIGEST_INTERVAL")
    notify_interval: float | None = Field(default=None, validation_alias="CADENCE_NOTIFY_INTERVAL")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Paris or UTC") from None
        return value.strip()

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not DATABASE_URL.match(value):
            raise ValueError(f"{hide_password(value)!r} is not a database URL Cadence can use; use "
                             "sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DATABASE")
        return value

    @field_validator("secret_key")
    @classmethod
    def _keys(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        keys = [k.strip() for k in value.split(",") if k.strip()]
        for number, key in enumerate(keys, 1):
            if not is_fernet_key(key):
                which = f"key {number} of {len(keys)}" if len(keys) > 1 else "the key"
                raise ValueError(f"{which} is not a Fernet key (44 characters of URL-safe base64); {FERNET_HINT}")
        return ",".join(keys)

    @field_validator("public_url", "gmail_api_url", "google_token_url", "google_jwks_url", "graph_api_url",
                     "ms_authority", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value.strip()):
            raise ValueError(f"{value!r} is not an http(s) URL")
        value = value.strip()
        if value.isascii():
            return value
        from core.links import ascii_url  # links and headers carry the IDNA host (büro.example → xn--bro-hoa.example)

        return ascii_url(value)

    @field_validator("prepare_batch", "claim_batch", "send_threads", mode="before")
    @classmethod
    def _count(cls, value):
        return _positive_number("", value, integer=True)

    @field_validator("lease_seconds", "slot_wait", "retry_base_seconds", "dispatch_interval", "sync_interval",
                     "reconcile_interval", "kpi_interval", "digest_interval", "notify_interval", mode="before")
    @classmethod
    def _seconds(cls, value):
        return _positive_number("", value)

    @property
    def tuning(self) -> dict[str, str]:
        """The worker tuning variables that are set, as `{"CADENCE_…": "value"}` (what the worker's
        `from_env` readers take), read from the environment and `.env` alike."""
        names = ("lease_seconds", "claim_batch", "send_threads", "slot_wait", "retry_base_seconds",
                 "dispatch_interval", "sync_interval", "reconcile_interval", "kpi_interval", "digest_interval",
                 "notify_interval", "prepare_batch")
        return {str(type(self).model_fields[n].validation_alias): str(getattr(self, n)) for n in names
                if getattr(self, n) is not None}

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'cadence.db').resolve()}"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file the database URL names (None for PostgreSQL or an in-memory database)."""
        match = re.match(r"^sqlite(\+pysqlite)?:///([^?]*)", self.resolved_database_url, re.IGNORECASE)
        if not match or match.group(2) in ("", ":memory:"):
            return None
        return Path(match.group(2))

    @property
    def maildir_root(self) -> Path:
        return self.home / "maildir"

    def ensure_home(self) -> None:
        """Create CADENCE_HOME when missing; SettingsError when it cannot be created or written."""
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise SettingsError(f"CADENCE_HOME: {self.home} exists and is not a folder") from None
        except OSError as exc:
            raise SettingsError(f"CADENCE_HOME: cannot create {self.home} ({exc.strerror})") from None
        if not self.home.is_dir():
            raise SettingsError(f"CADENCE_HOME: {self.home} exists and is not a folder")
        if not os.access(self.home, os.W_OK | os.X_OK):
            raise SettingsError(f"CADENCE_HOME: {self.home} is not writable by this user")

    @cached_property
    def secret_keys(self) -> list[bytes]:
        """Fernet keys, newest first. Generated once into $CADENCE_HOME/secret.key when unset."""
        if self.secret_key:
            return [k.strip().encode() for k in self.secret_key.split(",") if k.strip()]
        self.ensure_home()
        path = self.home / "secret.key"
        try:
            if not path.exists():
                from cryptography.fernet import Fernet

                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(Fernet.generate_key())
            key = path.read_bytes().strip()
        except OSError as exc:
            raise SettingsError(f"CADENCE_HOME: cannot use {path} ({exc.strerror})") from None
        if not is_fernet_key(key.decode("ascii", "replace")):
            raise SettingsError(f"{path}: not a Fernet key; delete it only if no credentials were stored "
                                "with it, or set CADENCE_SECRET_KEY")
        return [key]

    @cached_property
    def fernet(self) -> "MultiFernet":
        from cryptography.fernet import Fernet, MultiFernet

        return MultiFernet([Fernet(k) for k in self.secret_keys])


def load_settings(**overrides) -> Settings:
    """Settings from the environment and `.env`; SettingsError naming the first bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """One sentence for a pydantic-settings refusal: `VARIABLE: what is wrong`."""
    error = exc.errors()[0]
    variable = str(error["loc"][0]) if error.get("loc") else "settings"
    if variable in Settings.model_fields:
        alias = Settings.model_fields[variable].validation_alias
        variable = alias if isinstance(alias, str) else variable
    message = str(error.get("msg", "invalid value"))
    message = re.sub(r"^Value error, ", "", message)
    if error.get("type") == "bool_parsing":
        message = f"{error.get('input')!r} is not one of 1, 0, true, false"
    return f"{variable}: {message}"


def debug_requested() -> bool:
    """CADENCE_DEBUG (environment, else `.env`) asks for tracebacks; read even when other settings are bad."""
    value = os.environ.get("CADENCE_DEBUG")
    if value is None:
        try:
            from dotenv import dotenv_values

            value = dotenv_values(".env").get("CADENCE_DEBUG")
        except (OSError, UnicodeDecodeError):
            value = None
    return (value or "").strip().lower() in ("1", "true", "yes", "on")
