"""The web dashboard: a static page served by the service at `GET /` (docs/dashboard.md).

The page is plain HTML, CSS and JavaScript shipped in this package (no build step, no
CDN). It speaks the same JSON-RPC protocol over the same WebSocket as any client, with the
same token; this module only answers the plain-HTTP requests for its files and for
`/protocol.json` (the protocol's names, from `protocol.protocol_description()`, which the
page reads instead of spelling them), and names the page's own origins, which the service
admits in its Origin check.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
from collections.abc import Sequence
from http import HTTPStatus
from importlib import resources
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Response
from websockets.typing import Subprotocol

from cc_executor.protocol import protocol_description

# Nothing but this page's own files and its own WebSocket: no inline script or style, no
# other origin, no framing, no forms, no plugins.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# URL path -> (file in this package, content type)
MODULES = (
    "app.js",
    "rpc.js",
    "format.js",
    "tasks.js",
    "detail.js",
    "logview.js",
    "ansi.js",
    "transcript.js",
    "sessions.js",
    "workspace.js",
)
"""The page's JavaScript modules (`<script type="module">`, imported by app.js)."""

ASSETS: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
    **{f"/static/{m}": (m, "text/javascript; charset=utf-8") for m in MODULES},
}

PROTOCOL_PATH = "/protocol.json"
"""The protocol's names as JSON (no token needed: they are no secret, docs/protocol.md)."""

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

SUBPROTOCOL = "cc-executor"
"""The WebSocket subprotocol the page asks for, and the service selects."""

TOKEN_SUBPROTOCOL_PREFIX = "cc-executor.token."
"""The page sends its token as one more offered subprotocol, `cc-executor.token.<base64url>`:
a browser cannot set an Authorization header on a WebSocket, and a token in the URL's query
would show in the browser console whenever a connection fails."""


@functools.cache
def _read(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


@functools.cache
def _protocol_json() -> bytes:
    doc = protocol_description()
    doc["dashboard"] = {
        "subprotocol": SUBPROTOCOL,
        "token_subprotocol_prefix": TOKEN_SUBPROTOCOL_PREFIX,
    }
    return json.dumps(doc, indent=1).encode()


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


def token_from_subprotocols(values: list[str]) -> str | None:
    """The token offered in `Sec-WebSocket-Protocol` header values, if any."""
    for value in values:
        for offered in value.split(","):
            offered = offered.strip()
            if offered.startswith(TOKEN_SUBPROTOCOL_PREFIX):
                encoded = offered[len(TOKEN_SUBPROTOCOL_PREFIX) :]
                try:
                    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
                except (ValueError, UnicodeDecodeError):
                    return None
    return None


def select_subprotocol(connection: Any, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """websockets' `select_subprotocol`: the page's own when offered (never the token's)."""
    return Subprotocol(SUBPROTOCOL) if SUBPROTOCOL in offered else None


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
