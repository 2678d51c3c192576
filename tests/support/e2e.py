"""What the end-to-end tests share: the rep whose Gmail or Outlook mailbox the fakes serve (the
fixtures are in tests/e2e/conftest.py)."""
from __future__ import annotations

REP = "rep@example.com"


def add_gmail_mailbox(cli, account) -> None:
    """The rep and their Gmail mailbox at the fake, added the way an operator does (a refresh-token file)."""
    cli.ok("rep", "add", "--email", REP, "--name", "Rita Rep")
    token_file = cli.home / "refresh-token.txt"
    token_file.write_text(account.refresh_token + "\n", encoding="utf-8")
    cli.ok("mailbox", "add", "--provider", "gmail", "--address", REP, "--owner", REP,
           "--refresh-token-file", str(token_file))


def connect_outlook_mailbox(cli, identity) -> None:
    """The rep and their Outlook mailbox, connected through a signed link on `cadence serve`'s OAuth
    routes and the fake Microsoft sign-in (authorization code with PKCE)."""
    from starlette.testclient import TestClient

    from cadence.app import App
    from cadence.connect import oauth_routes
    from cadence.http import create_http_app

    cli.ok("rep", "add", "--email", REP)
    link = cli.ok("mailbox", "connect", "outlook", "--owner", REP, "--link").split()[-1]
    app = App.from_settings()
    web = create_http_app(app, extra_routes=oauth_routes(app))
    with TestClient(web, base_url="https://cadence.test", follow_redirects=False) as client:
        start = client.get(link)
        assert start.status_code == 302, start.text
        identity.sign_in(REP)
        done = client.get("/oauth/outlook/callback", params=identity.complete_sign_in(start.headers["location"]))
        assert done.status_code == 200, done.text
    app.db.dispose()
