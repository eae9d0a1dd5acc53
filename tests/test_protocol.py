"""The protocol is defined once: every method has a route and no route lacks a method,
docs/protocol.md names every method, notification and error code, and the service serves
the same names as `/protocol.json` (which the dashboard reads)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from cc_executor.handlers import ROUTES
from cc_executor.protocol import (
    PARAMS,
    Action,
    ErrorCode,
    Method,
    Notification,
    Stream,
    TaskStatus,
)
from cc_executor.server import ExecutorService

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "protocol.md").read_text()


def test_routes_cover_exactly_the_methods() -> None:
    assert set(ROUTES) == {m.value for m in Method}
    assert set(PARAMS) == set(Method)
    for name, route in ROUTES.items():
        assert route.params_model is PARAMS[Method(name)], name


def test_the_doc_names_every_method_and_notification() -> None:
    named = set(re.findall(r"`([a-z_.]+)`", DOC))
    missing = [m.value for m in (*Method, *Notification) if m.value not in named]
    assert not missing, f"docs/protocol.md does not name {missing}"


def test_the_doc_lists_every_error_code() -> None:
    rows = dict(re.findall(r"^\| (-32\d{3}) \| (.+) \|$", DOC, re.M))
    missing = [e.name for e in ErrorCode if str(e.value) not in rows]
    assert not missing, f"docs/protocol.md's error table lacks {missing}"
    assert set(rows) == {str(e.value) for e in ErrorCode}  # and lists no other code


async def test_the_served_description_is_protocol_py(service: ExecutorService) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        r = await http.get(f"http://127.0.0.1:{service.port}/protocol.json")  # no token
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    served = r.json()
    assert served["methods"] == {m.name: m.value for m in Method}
    assert served["notifications"] == {n.name: n.value for n in Notification}
    assert served["error_codes"] == {e.name: e.value for e in ErrorCode}
    assert served["task_statuses"] == {s.name: s.value for s in TaskStatus}
    assert set(served["final_statuses"]) == {s.value for s in TaskStatus if s.is_final}
    assert served["actions"] == {a.name: a.value for a in Action}
    assert served["streams"] == {s.name: s.value for s in Stream}
