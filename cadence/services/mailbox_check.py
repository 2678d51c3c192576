"""Checking a new mailbox's credentials before anything is stored (`cadence mailbox add`).

Each provider is asked once, through its real client: Maildir creates (or finds) its folders,
Gmail refreshes the token and reads `users.getProfile`, Outlook redeems the refresh token with
msal (`acquire_token_by_refresh_token`) into the msal token cache the connector keeps using.
"""
from __future__ import annotations

from cadence.app import App, MailboxUnusable
from cadence.services.errors import UserError
from core.mailbox import Disconnected, MailboxError
from store.models import MailboxRow


def checked_credentials(app: App, *, provider: str, address: str, credentials: dict | None,
                        path: str | None) -> dict | None:
    """The credentials to store for a new mailbox, once they were seen to work.

    Raises UserError (one sentence naming the option or setting at fault); nothing is stored then.
    """
    if provider == "outlook":
        credentials = _outlook_credentials(app, address, credentials)
    if provider == "gmail" and not (credentials or {}).get("refresh_token"):
        raise UserError("--refresh-token-file: a Gmail mailbox needs a refresh token "
                        "(or use `cadence mailbox connect gmail`)")
    row = MailboxRow(address=address, provider=provider, path=path,
                     credentials=app.encrypt(credentials) if credentials is not None else None)
    factory = app.mailbox_factories.get(provider) or _default_factory(provider)
    try:
        connector = factory(app, row)
        if provider == "gmail":
            connector.account_address()
    except MailboxUnusable as exc:
        raise UserError(f"{'--path' if provider == 'maildir' else provider}: {exc.reason}; nothing was stored") from None
    except OSError as exc:
        raise UserError(f"--path: cannot use {exc.filename or path} ({exc.strerror or exc}); nothing was stored") from None
    except (Disconnected, MailboxError) as exc:
        raise UserError(f"--refresh-token-file: {exc.reason}; nothing was stored") from None
    except ValueError as exc:
        raise UserError(f"{provider}: {exc}; nothing was stored") from None
    finally:
        close = getattr(locals().get("connector"), "close", None)
        if callable(close):
            close()
    return credentials


def _outlook_credentials(app: App, address: str, credentials: dict | None) -> dict | None:
    if credentials is None or "token_cache" in credentials:
        if credentials is None:
            raise UserError("--refresh-token-file: an Outlook mailbox needs a refresh token "
                            "(or use `cadence mailbox connect outlook`)")
        return credentials
    s = app.settings
    if not s.ms_client_id:
        raise UserError("CADENCE_MS_CLIENT_ID is not set (see docs/outlook.md); nothing was stored")
    from connectors.outlook.identity import token_cache_from_refresh_token

    try:
        cache, username = token_cache_from_refresh_token(
            credentials["refresh_token"], client_id=s.ms_client_id, client_secret=s.ms_client_secret,
            authority=s.ms_authority, expected_username=address)
    except MailboxError as exc:
        raise UserError(f"--refresh-token-file: {exc.reason}; nothing was stored") from None
    except ValueError as exc:
        raise UserError(f"CADENCE_MS_AUTHORITY / CADENCE_MS_CLIENT_ID: {exc}; nothing was stored") from None
    return {"token_cache": cache, "username": username or address, "public_client": not s.ms_client_secret}


def _default_factory(provider: str):
    from cadence.app import DEFAULT_FACTORIES

    return DEFAULT_FACTORIES[provider]

