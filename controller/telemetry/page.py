"""The live page's files. They ship inside the package (setup.py package_data); no CDN, no build step.

`static/index.html` loads `static/app.css` and `static/app.js`; the script fetches `/history.json`
every few seconds and draws small SVG charts per member. Served with a strict Content-Security-Policy:
the page needs nothing but this server.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

#: path -> (file under static/, content type)
ASSETS: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"


@cache
def read(name: str) -> bytes:
    return resources.files("controller.telemetry").joinpath("static").joinpath(name).read_bytes()


def total_bytes() -> int:
    """What the page weighs, all files together."""
    return sum(len(read(name)) for name in {n for n, _ in ASSETS.values()})
