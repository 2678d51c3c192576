"""Operator settings from the environment and `.env` (see the interface page)."""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    graph_api_url: str = Field(default="https://graph.microsoft.com/v1.0", validation_alias="CADENCE_GRAPH_API_URL")
    ms_authority: str = Field(default="https://login.microsoftonline.com/common", validation_alias="CADENCE_MS_AUTHORITY")
    ms_client_id: str | None = Field(default=None, validation_alias="CADENCE_MS_CLIENT_ID")
    ms_client_secret: str | None = Field(default=None, validation_alias="CADENCE_MS_CLIENT_SECRET")
    slack_bot_token: str | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias="CADENCE_SLACK_API_URL")
    # A preparation's lease, renewed while it runs (the worker's CADENCE_LEASE_SECONDS), and its
    # overall time budget; both in seconds.
    lease_seconds: float = Field(default=60.0, gt=0, validation_alias="CADENCE_LEASE_SECONDS")
    prepare_budget_seconds: float = Field(default=3600.0, gt=0, validation_alias="CADENCE_PREPARE_BUDGET")
    salesforce_login_url: str = Field(default="https://login.salesforce.com",
                                      validation_alias="CADENCE_SALESFORCE_LOGIN_URL")
    salesforce_client_id: str | None = Field(default=None, validation_alias="CADENCE_SALESFORCE_CLIENT_ID")
    salesforce_client_secret: str | None = Field(default=None, validation_alias="CADENCE_SALESFORCE_CLIENT_SECRET")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'cadence.db').resolve()}"

    @property
    def maildir_root(self) -> Path:
        return self.home / "maildir"

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)

    @cached_property
    def secret_keys(self) -> list[bytes]:
        """Fernet keys, newest first. Generated once into $CADENCE_HOME/secret.key when unset."""
        if self.secret_key:
            return [k.strip().encode() for k in self.secret_key.split(",") if k.strip()]
        self.ensure_home()
        path = self.home / "secret.key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
        return [path.read_bytes().strip()]

    @cached_property
    def fernet(self) -> MultiFernet:
        return MultiFernet([Fernet(k) for k in self.secret_keys])
