"""Microsoft sign-in for the Outlook connector: building msal applications and handing out
access tokens from a mailbox's persisted msal token cache.

The token cache is the mailbox's credential. Whenever msal changes it (a refreshed access token,
a rotated refresh token), the new serialized cache goes to `on_token_cache_change` so the caller
can store it (encrypted) before anything else happens.
"""
from __future__ import annotations

import threading
from typing import Any, Callable
from urllib.parse import urlsplit

import msal
import requests
from msal.exceptions import MsalError

from core.mailbox import Disconnected, TransientError

# Delegated Graph permissions. msal adds openid, profile and offline_access by itself (it
# refuses to be given them), and offline_access is what gets us a refresh token.
GRAPH_SCOPES: tuple[str, ...] = ("Mail.ReadWrite", "Mail.Send", "User.Read")

# Hosts of Microsoft's own identity platform (public and national clouds). msal runs instance
# discovery (a call to login.microsoftonline.com) for unknown hosts, so any other host, such
# as a local fake or an identity proxy, gets instance discovery turned off.
MICROSOFT_LOGIN_HOSTS = frozenset({
    "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net",
    "login.microsoftonline.us", "login.usgovcloudapi.net", "login-us.microsoftonline.com",
    "login.chinacloudapi.cn", "login.partner.microsoftonline.cn", "login.microsoftonline.de",
})

# msal / token endpoint errors that are worth trying again later; every other error means a
# person has to sign in again (invalid_grant, interaction_required, consent_required, ...).
TRANSIENT_TOKEN_ERRORS = frozenset({"temporarily_unavailable", "server_error", "service_unavailable"})


def check_authority(authority: str) -> tuple[str, bool]:
    """Return the authority without a trailing slash and whether its host is Microsoft's.

    Raises ValueError naming `authority` unless it is https://host/tenant.
    """
    parts = urlsplit(authority or "")
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"authority (CADENCE_MS_AUTHORITY) must be an https URL, got {authority!r}")
    if not parts.path.strip("/"):
        raise ValueError(f"authority (CADENCE_MS_AUTHORITY) must name a tenant, e.g. "
                         f"https://login.microsoftonline.com/common; got {authority!r}")
    return authority.rstrip("/"), parts.hostname.lower() in MICROSOFT_LOGIN_HOSTS


def build_msal_app(*, client_id: str, client_secret: str | None, authority: str,
                   token_cache: msal.TokenCache | None = None, http_client: Any = None) -> msal.ClientApplication:
    """A confidential client when there is a secret, a public client (device code) otherwise.

    msal fetches the authority's OpenID configuration here, so this does network I/O.
    """
    if not client_id:
        raise ValueError("client_id (CADENCE_MS_CLIENT_ID) is required")
    authority, is_microsoft = check_authority(authority)
    options: dict[str, Any] = {"authority": authority, "token_cache": token_cache}
    if not is_microsoft:
        options["instance_discovery"] = False
    if http_client is not None:
        options["http_client"] = http_client
    if client_secret:
        return msal.ConfidentialClientApplication(client_id, client_credential=client_secret, **options)
    return msal.PublicClientApplication(client_id, **options)


def error_reason(result: dict[str, Any]) -> str:
    """The first line of msal's error_description (the rest is trace ids), or the error code."""
    description = (result.get("error_description") or "").strip().splitlines()
    return description[0].strip() if description else str(result.get("error") or "unknown sign-in error")


class TokenSource:
    """Access tokens for one mailbox, from its serialized msal token cache.

    `access_token()` calls msal's silent acquisition (cached token, or a refresh); it raises
    `Disconnected` with msal's reason when a person must sign in again, `TransientError` when
    the sign-in service could not be reached. The msal application is built on first use.
    """

    def __init__(self, *, client_id: str, client_secret: str | None, authority: str,
                 token_cache: str | None, on_token_cache_change: Callable[[str], None],
                 account_username: str | None = None, http_client: Any = None,
                 scopes: tuple[str, ...] = GRAPH_SCOPES):
        check_authority(authority)  # fail at construction on a bad setting, not at first send
        if not client_id:
            raise ValueError("client_id (CADENCE_MS_CLIENT_ID) is required")
        self._client_id, self._client_secret, self._authority = client_id, client_secret, authority
        self._http_client = http_client
        self._scopes = list(scopes)
        self._account_username = account_username
        self._on_change = on_token_cache_change
        self.cache = msal.SerializableTokenCache()
        if token_cache:
            try:
                self.cache.deserialize(token_cache)
            except ValueError as bad:
                raise ValueError(f"token_cache is not a serialized msal token cache: {bad}") from None
        self._app: msal.ClientApplication | None = None
        self._lock = threading.Lock()

    def access_token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            try:
                result = self._acquire(force_refresh)
            except (requests.RequestException, MsalError) as failure:
                raise TransientError(f"the Microsoft sign-in service could not be reached: {failure}") from None
            finally:
                self._persist_if_changed()
            return result

    def _acquire(self, force_refresh: bool) -> str:
        if self._app is None:
            try:
                self._app = build_msal_app(client_id=self._client_id, client_secret=self._client_secret,
                                           authority=self._authority, token_cache=self.cache,
                                           http_client=self._http_client)
            except ValueError as bad:  # msal could not read the authority's OpenID configuration
                raise Disconnected(f"the sign-in authority is not usable: {bad}") from None
        account = self._account()
        result = self._app.acquire_token_silent_with_error(self._scopes, account, force_refresh=force_refresh)
        if not result:
            raise Disconnected(f"no usable token for {account.get('username')}; sign in to Outlook again")
        if "access_token" not in result:
            reason = error_reason(result)
            if result.get("error") in TRANSIENT_TOKEN_ERRORS:
                raise TransientError(reason)
            raise Disconnected(reason)
        return result["access_token"]

    def _account(self) -> dict[str, Any]:
        assert self._app is not None
        accounts = self._app.get_accounts()
        if self._account_username:
            wanted = self._account_username.lower()
            accounts = [a for a in accounts if (a.get("username") or "").lower() == wanted] or (
                accounts if len(accounts) == 1 else [])
        if not accounts:
            raise Disconnected(f"the token cache holds no signed-in account "
                               f"{self._account_username or ''}; sign in to Outlook again".replace("  ", " "))
        return accounts[0]

    def _persist_if_changed(self) -> None:
        if self.cache.has_state_changed:
            self._on_change(self.cache.serialize())


def token_cache_from_refresh_token(refresh_token: str, *, client_id: str, client_secret: str | None,
                                   authority: str, expected_username: str | None = None,
                                   http_client: Any = None) -> tuple[str, str]:
    """Redeem a refresh token once (msal `acquire_token_by_refresh_token`, the OAuth 2.0 refresh
    token grant of the Microsoft identity platform) and return (the serialized msal token cache now
    holding the signed-in account, that account's username).

    Raises `Disconnected` with Microsoft's reason when the token is refused, or when it belongs to
    another account than `expected_username`; `TransientError` when the service cannot be reached;
    ValueError for a bad client setting.
    """
    cache = msal.SerializableTokenCache()
    try:
        app = build_msal_app(client_id=client_id, client_secret=client_secret, authority=authority,
                             token_cache=cache, http_client=http_client)
        result = app.acquire_token_by_refresh_token(refresh_token, scopes=list(GRAPH_SCOPES))
    except (requests.RequestException, MsalError) as failure:
        raise TransientError(f"the Microsoft sign-in service could not be reached: {failure}") from None
    if "access_token" not in (result or {}):
        raise Disconnected(f"Microsoft refused the refresh token ({error_reason(result or {})})")
    accounts = app.get_accounts()
    username = (accounts[0].get("username") if accounts else None) or \
        (result.get("id_token_claims") or {}).get("preferred_username") or ""
    if expected_username and username and username.lower() != expected_username.lower():
        raise Disconnected(f"the refresh token belongs to {username}, not {expected_username}")
    return cache.serialize(), username or (expected_username or "")
