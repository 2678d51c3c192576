"""Signing in with a one-time link, and signing out.

`GET /signin/<token>` signs in at once and always lands on `/` (no `next` parameter, so no open
redirect); a used, expired or unknown link gets the same 400 page. `POST /signout` ends the
session in the store and clears the cookie.
"""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cadence.services.reads import Viewer
from cadence.services.signin import COOKIE, SESSION_LIFETIME, end_session, redeem_link
from web.site import HEADERS, Site, log


def routes(site: Site) -> list[Route]:
    async def signin(request: Request) -> Response:
        token = request.path_params["token"]
        found = await run_in_threadpool(redeem_link, site.app, token)
        if found is None:
            log.warning("refused: a sign-in link that is unknown, expired or already used")
            response = site.page(request, "link_invalid.html", 400)
            response.headers["Referrer-Policy"] = "no-referrer"
            return response
        cookie, person = found
        log.info("%s (%s) signed in to the web app", person.email, person.role)
        response = RedirectResponse("/", status_code=303, headers={**HEADERS, "Referrer-Policy": "no-referrer"})
        response.set_cookie(COOKIE, cookie, max_age=int(SESSION_LIFETIME.total_seconds()), path="/",
                            httponly=True, samesite="lax", secure=site.secure_cookies)
        return response

    async def signout(request: Request, person: Viewer) -> Response:
        await run_in_threadpool(end_session, site.app, request.cookies.get(COOKIE))
        log.info("%s signed out of the web app", person.email)
        response = site.page(request, "signed_out.html", 200, None, signed_out=True)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=site.secure_cookies)
        return response

    return [
        Route("/signin/{token}", signin, methods=["GET"]),
        Route("/signout", site.signed_in(signout), methods=["POST"]),
    ]
