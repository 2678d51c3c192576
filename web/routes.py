"""The web app's routes, for `cadence.http.create_http_app`."""
from __future__ import annotations

from starlette.routing import BaseRoute, Mount

from cadence.app import App
from web import auth, campaigns, oidc, tasks
from web.assets import PREFIX
from web.site import Site


def web_routes(app: App) -> tuple[list[BaseRoute], Site]:
    """The routes, and the Site whose `stopping` event ends live streams and preparations on shutdown."""
    site = Site(app)
    routes: list[BaseRoute] = [
        *oidc.routes(site),
        *auth.routes(site),
        *campaigns.routes(site),
        *tasks.routes(site),
        Mount(PREFIX, site.static, name="static"),
    ]
    return routes, site
