"""The web app's static files, under URLs that change with their content.

A deploy changes cadence.js or the CSS under the same file names; a browser that cached the old
file by its name would run it with the new pages. So every template asks `static_url(name)` for
`/static/<name>?v=<hash of the file's bytes>`, hashed once at start-up: a new file is a new URL,
and an answer to the URL of the current bytes can be cached for good. Any other request for a
static file (no version, or an old one) keeps revalidating.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

PREFIX = "/static"
FOREVER = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


def version_of(content: bytes) -> str:
    """The short hash of a file's bytes that its URL carries."""
    return hashlib.sha256(content).hexdigest()[:12]


class StaticAssets(StaticFiles):
    """StaticFiles over `directory`, knowing the version of each of its files as they were at start-up."""

    def __init__(self, directory: Path):
        super().__init__(directory=directory)
        self.root = Path(directory).resolve()
        self.versions = {path.relative_to(directory).as_posix(): version_of(path.read_bytes())
                         for path in sorted(directory.rglob("*")) if path.is_file()}

    def url(self, name: str) -> str:
        """The URL of a static file, for templates; a name that is not there fails the page, not the browser."""
        if name not in self.versions:
            raise LookupError(f"no static file {name!r}")
        return f"{PREFIX}/{name}?v={self.versions[name]}"

    def file_response(self, full_path: os.PathLike, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        name = Path(full_path).relative_to(self.root).as_posix()
        asked = QueryParams(scope.get("query_string", b"")).get("v")
        current = asked is not None and asked == self.versions.get(name)
        response.headers["Cache-Control"] = FOREVER if current else REVALIDATE
        return response
