"""The web app: sign-in links, the campaigns and their delivery dashboards, the rep's command
centre and the live feed, served by `cadence serve` on the same port (see docs/web.md).

Server-rendered (Jinja2 on Starlette), htmx and one small script of our own, vendored under
`web/static` (no build step). Pages are thin: parse, check who may do it, call a use case of
`cadence.services`, render. No SQL here.
"""
