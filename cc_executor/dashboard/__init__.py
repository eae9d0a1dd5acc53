"""The web dashboard: a static page served by the service at `GET /` (docs/dashboard.md).

The page is plain HTML, CSS and JavaScript shipped in this package (no build step, no
CDN). It speaks the same JSON-RPC protocol over the same WebSocket as any client, with the
same token; this module only answers the plain-HTTP requests for its files and for
`/protocol.json` (the protocol's names, from `protocol.protocol_description()`, which the
page reads instead of spelling them), and names the page's own origins, which the service
admits in its Origin check.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from http import HTTPStatus
from importlib import resources

from websockets.datastructures import Headers
from websockets.http11 import Response

from cc_executor.protocol import protocol_description

# Nothing but this page's own files and its own WebSocket: no inline script or style, no
# other origin, no framing, no forms, no plugins.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# URL path -> (file in this package, content type)
ASSETS: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/workspace.js": ("workspace.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}

PROTOCOL_PATH = "/protocol.json"
"""The protocol's names as JSON (no token needed: they are no secret, docs/protocol.md)."""

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@functools.cache
def _read(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


@functools.cache
def _protocol_json() -> bytes:
    return json.dumps(protocol_description(), indent=1).encode()


def asset_response(path: str) -> Response | None:
    """The response for one of the page's files (or the protocol's names), or None if
    `path` is none of them."""
    if path == PROTOCOL_PATH:
        body, content_type = _protocol_json(), "application/json"
    else:
        entry = ASSETS.get(path)
        if entry is None:
            return None
        name, content_type = entry
        body = _read(name)
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Content-Security-Policy", CSP),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
            ("Cross-Origin-Resource-Policy", "same-origin"),
            ("Cache-Control", "no-cache"),
        ]
    )
    return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, body)


def own_origins(host: str, port: int) -> frozenset[str]:
    """The origins a browser sends for the page served by this service itself.

    A loopback or wildcard bind is reached as 127.0.0.1, localhost or [::1]; any other bind
    address (or name) as itself. Origins are never taken from the request's Host header: a
    DNS-rebinding page would control it.
    """
    names: set[str] = set()
    bare = host.strip("[]")
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        ip = None
    if bare in ("", "localhost") or (ip is not None and (ip.is_loopback or ip.is_unspecified)):
        names.update(_LOOPBACK_NAMES)
    if bare and not (ip is not None and ip.is_unspecified):
        names.add(f"[{bare}]" if ip is not None and ip.version == 6 else bare.lower())
    return frozenset(f"http://{name}:{port}" for name in names)
