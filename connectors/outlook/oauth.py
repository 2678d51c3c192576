"""Connecting an Outlook mailbox (`cadence mailbox connect outlook`): msal's sign-in flows.

Browser: `start_auth_code_flow(redirect_uri)` returns msal's flow (open `flow["auth_uri"]`;
keep the whole flow server-side, found again by `flow["state"]`); the callback at
`CADENCE_PUBLIC_URL/oauth/outlook/callback` hands what it received to `finish_auth_code_flow`.
msal checks the state and does PKCE. The default response mode is `form_post` (msal's advice),
so the callback receives a POST form; `response_mode="query"` gives a GET with a query string.

Terminal: `start_device_flow()` returns msal's device flow (show `flow["message"]`), and
`finish_device_flow(flow)` waits until the person has entered the code. The device code flow
needs a public client ("Allow public client flows" in the app registration), so such a mailbox
is used later with `client_secret=None` (`OutlookConnection.public_client`).

Both end in an `OutlookConnection`: the serialized msal token cache to store encrypted, and the
signed-in account's username.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import msal
import requests
from msal.exceptions import MsalError

from .identity import GRAPH_SCOPES, build_msal_app, error_reason

DEVICE_FLOW_RETRIABLE = frozenset({"authorization_pending", "slow_down"})


@dataclass(frozen=True)
class OutlookConnection:
    username: str  # preferred_username of the signed-in account (usually the mailbox address)
    token_cache: str  # serialized msal.SerializableTokenCache
    public_client: bool  # connected with the device code: use the mailbox without a client secret


class OutlookSignInError(Exception):
    """Sign-in did not complete; `reason` is one sentence for the operator."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class OutlookSignIn:
    def __init__(self, *, client_id: str, client_secret: str | None, authority: str,
                 http_client: Any = None, scopes: tuple[str, ...] = GRAPH_SCOPES):
        self._client_id, self._client_secret, self._authority = client_id, client_secret, authority
        self._http_client = http_client
        self._scopes = list(scopes)

    def _app(self, cache: msal.SerializableTokenCache, *, public: bool) -> msal.ClientApplication:
        try:
            return build_msal_app(client_id=self._client_id, client_secret=None if public else self._client_secret,
                                  authority=self._authority, token_cache=cache, http_client=self._http_client)
        except requests.RequestException as failure:
            raise OutlookSignInError(f"the Microsoft sign-in service could not be reached: {failure}") from None

    # ---- browser (authorization code + PKCE)

    def start_auth_code_flow(self, redirect_uri: str, *, login_hint: str | None = None,
                             response_mode: str = "form_post") -> dict[str, Any]:
        """msal's auth-code flow dict; send the person to `flow["auth_uri"]`."""
        if not redirect_uri.startswith(("https://", "http://localhost", "http://127.0.0.1")):
            raise ValueError(f"redirect_uri must be https (or http on localhost), got {redirect_uri!r}")
        app = self._app(msal.SerializableTokenCache(), public=not self._client_secret)
        return app.initiate_auth_code_flow(self._scopes, redirect_uri=redirect_uri, login_hint=login_hint,
                                           response_mode=response_mode, prompt="select_account")

    def finish_auth_code_flow(self, flow: Mapping[str, Any], auth_response: Mapping[str, str]) -> OutlookConnection:
        """Redeem the code the callback received. Refuses an answer whose state does not match."""
        cache = msal.SerializableTokenCache()
        app = self._app(cache, public=not self._client_secret)
        try:
            result = app.acquire_token_by_auth_code_flow(dict(flow), dict(auth_response))
        except ValueError as refused:  # msal: state mismatch, or a flow it did not start
            raise OutlookSignInError(f"the sign-in answer does not belong to this sign-in ({refused}); "
                                     "start the connection again") from None
        except (requests.RequestException, MsalError) as failure:
            raise OutlookSignInError(f"the Microsoft sign-in service could not be reached: {failure}") from None
        return self._connection(result, cache, public=not self._client_secret)

    # ---- terminal (device code)

    def start_device_flow(self) -> dict[str, Any]:
        """msal's device flow; show `flow["message"]` (URL and code) to the person."""
        app = self._app(msal.SerializableTokenCache(), public=True)
        flow = app.initiate_device_flow(self._scopes)
        if "user_code" not in flow:
            raise OutlookSignInError(f"the device code could not be started: {error_reason(flow)}")
        return flow

    def finish_device_flow(self, flow: dict[str, Any], *, sleep: Callable[[float], None] = time.sleep) -> OutlookConnection:
        """Poll until the person signed in, declined, or the code expired (`sleep` between polls)."""
        cache = msal.SerializableTokenCache()
        app = self._app(cache, public=True)
        interval = max(1, int(flow.get("interval") or 5))
        polls = math.ceil(int(flow.get("expires_in") or 900) / interval) + 1
        result: dict[str, Any] = {}
        for _ in range(polls):
            try:
                result = app.acquire_token_by_device_flow(flow, exit_condition=lambda _flow: True)
            except (requests.RequestException, MsalError) as failure:
                raise OutlookSignInError(f"the Microsoft sign-in service could not be reached: {failure}") from None
            if result.get("error") not in DEVICE_FLOW_RETRIABLE:
                return self._connection(result, cache, public=True)
            sleep(max(interval, int(flow.get("interval") or interval)))
        raise OutlookSignInError(f"the device code expired before sign-in finished: {error_reason(result)}")

    @staticmethod
    def _connection(result: dict[str, Any], cache: msal.SerializableTokenCache, *, public: bool) -> OutlookConnection:
        if "access_token" not in result:
            raise OutlookSignInError(f"Microsoft refused the sign-in: {error_reason(result)}")
        username = (result.get("id_token_claims") or {}).get("preferred_username")
        if not username:
            raise OutlookSignInError("the sign-in did not say which account signed in (no preferred_username)")
        return OutlookConnection(username=username, token_cache=cache.serialize(), public_client=public)
