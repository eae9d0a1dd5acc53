"""Hostile access: connection floods, allow-list bypass attempts, foreign origins and bad
tokens (fuzzed frames: test_hostile.py).

Beyond `max_connections` a flood of handshakes is refused with HTTP 503, no more are
admitted than the limit allows, and the open connections keep working. With the
allow-list on, every bypass attempt is refused with -32002 and nothing runs. Handshakes
from a foreign Origin (even with the token) get 403, without the right token 401.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import InvalidStatus

from cc_executor.protocol import ErrorCode, ProtocolError
from tests.support import FAKE_CLAUDE, ServiceProcess, wait_until

from .conftest import MakeSvc
from .support import REPORT, P, Wire, child, leftovers

pytestmark = pytest.mark.stress


# ------------------------------------------------------------------ connection floods


async def _handshake(url: str, **kw: Any) -> int:
    """The HTTP status of one WebSocket handshake (101 = accepted, then closed)."""
    try:
        async with aconnect(url, proxy=None, open_timeout=60, **kw):
            return 101
    except InvalidStatus as exc:
        return int(exc.response.status_code)


async def test_connection_flood_beyond_the_limit(make_svc: MakeSvc, mark: str) -> None:
    """Concurrent handshakes when the service is half full and when it is full: never more
    admitted than `max_connections`, the rest refused with 503, open connections unharmed."""
    row = REPORT.row(f"connection flood: {P.flood} handshakes x 2")
    limit = 20
    svc = await make_svc(CC_EXECUTOR_MAX_CONNECTIONS=str(limit))
    t0 = time.monotonic()
    auth = {"Authorization": f"Bearer {svc.token}"}
    wires = [Wire() for _ in range(limit // 2)]
    clients = [svc.client(on_notification=w) for w in wires]
    for c in clients:
        await c.connect()
    tickers = [
        await c.execute(child("ticker", f"f{i}"), env={"CC_STRESS_MARK": mark})
        for i, c in enumerate(clients)
    ]
    for w, h in zip(wires, tickers, strict=True):
        await asyncio.wait_for(w.first_output[h.task_id].wait(), 60)

    # Half full: a flood of handshakes that stay open once admitted.
    admitted: list[Any] = []
    release = asyncio.Event()

    async def hold() -> int:
        try:
            async with aconnect(svc.url, proxy=None, open_timeout=60, additional_headers=auth):
                admitted.append(1)
                await release.wait()
                return 101
        except InvalidStatus as exc:
            return int(exc.response.status_code)

    holders = [asyncio.ensure_future(hold()) for _ in range(P.flood)]
    # Every refused handshake returns; the admitted ones wait for release.
    await wait_until(
        lambda: sum(h.done() for h in holders) + len(admitted) >= P.flood, 120, "the flood"
    )
    over = len(admitted) - (limit - len(clients))
    refused = [h.result() for h in holders if h.done()]
    # Full: another flood is refused outright, while the open clients keep working.
    t = time.perf_counter()
    second = await asyncio.gather(
        *(_handshake(svc.url, additional_headers=auth) for _ in range(P.flood))
    )
    refuse_s = time.perf_counter() - t
    pings = await asyncio.gather(*(c.ping() for c in clients))
    before = {
        h.task_id: len(w.pieces[(h.task_id, "stdout")]) for w, h in zip(wires, tickers, strict=True)
    }
    health = _health(svc)
    release.set()
    await asyncio.gather(*holders)
    for w, h in zip(wires, tickers, strict=True):  # still streaming
        n = before[h.task_id]
        await wait_until(
            lambda w=w, h=h, n=n: len(w.pieces[(h.task_id, "stdout")]) > n, 30, "output"
        )
    for c, h in zip(clients, tickers, strict=True):
        assert (await c.control(h.task_id, "CANCEL"))["status"] == "cancelled"
        await c.close()
    left = await leftovers(mark, [h.pid or 0 for h in tickers])
    row.tasks = len(tickers)
    row.failures = max(0, over) + sum(1 for s in second if s != 503)
    row.leftovers = len(left)
    row.max_rss = svc.sample_rss()
    row.wall_s = time.monotonic() - t0
    row.note = (
        f"half full: {len(admitted)} admitted of {P.flood} (room for {limit - len(clients)}); "
        f"full: {P.flood} refused in {refuse_s:.2f} s"
    )
    assert over <= 0, f"{len(admitted)} admitted with room for {limit - len(clients)}"
    assert set(refused) <= {503}, refused
    assert set(second) == {503}, second
    assert all(p["pong"] for p in pings)
    assert health["connections"] <= limit, health
    assert not left, left


def _health(svc: ServiceProcess) -> dict[str, Any]:
    import httpx

    return dict(httpx.get(f"http://127.0.0.1:{svc.port}/health", trust_env=False).json())


# ------------------------------------------------------------------ the allow-list


def _evil(tmp_path: Path) -> dict[str, Any]:
    """A marker file that must never appear, and the tools of each attempt."""
    marker = tmp_path / "pwned"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "tool"
    tool.write_text("#!/bin/bash\necho tool ran\n")
    tool.chmod(0o755)
    evil = tmp_path / "evil" / "sub"
    evil.mkdir(parents=True)
    evil_tool = tmp_path / "evil" / "tool"
    evil_tool.write_text(f"#!/bin/sh\ntouch {marker}\n")
    evil_tool.chmod(0o755)
    (bindir / "link").symlink_to(evil)  # bin/link/.. is evil/, not bin/
    (tmp_path / "evil" / "ls").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (tmp_path / "evil" / "ls").chmod(0o755)
    (tmp_path / "evil" / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w')\n")
    (tmp_path / "evil" / "python3").symlink_to(tmp_path / "evil" / "ls")
    return {
        "marker": str(marker),
        "tool": str(tool),
        "dotdot": f"{bindir}/link/../tool",
        "evil_dir": str(tmp_path / "evil"),
        "evil_tool": str(evil_tool),
    }


# Refused by params validation (-32602) before the allow-list is even asked.
INVALID_ANYWAY = {"NUL in the program", "empty program"}
ATTEMPTS: list[tuple[str, str, dict[str, Any]]] = [
    # (label, method, params) with {placeholders} filled from _evil()
    ("semicolon", "execute", {"command": "echo a;touch {marker}"}),
    ("and-and", "execute", {"command": "echo a&&touch {marker}"}),
    ("or-or", "execute", {"command": "false||touch {marker}"}),
    ("dollar-paren", "execute", {"command": "echo $(touch {marker})"}),
    ("dollar-brace", "execute", {"command": "echo ${{IFS}}touch${{IFS}}{marker}"}),
    ("backticks", "execute", {"command": "echo `touch {marker}`"}),
    ("newline", "execute", {"command": "echo a\ntouch {marker}"}),
    ("carriage return", "execute", {"command": "echo a\rtouch {marker}"}),
    ("redirect", "execute", {"command": "echo pwned > {marker}"}),
    ("background", "execute", {"command": "touch {marker} & echo a"}),
    ("subshell", "execute", {"command": "(touch {marker})"}),
    ("process subst", "execute", {"command": "echo <(touch {marker})"}),
    ("path to an unlisted copy", "execute", {"command": ["{evil_dir}/ls"]}),
    ("relative path", "execute", {"command": ["./ls"], "cwd": "{evil_dir}"}),
    ("dot-dot through a symlink", "execute", {"command": ["{dotdot}"]}),
    ("dot-dot in a string", "execute", {"command": "{dotdot}"}),
    ("unlisted program", "execute", {"command": ["touch", "{marker}"]}),
    ("shell as program", "execute", {"command": ["sh", "-c", "touch {marker}"]}),
    ("NUL in the program", "execute", {"command": ["echo\u0000", "a"]}),
    ("fullwidth lookalike", "execute", {"command": ["\uff45\uff43\uff48\uff4f", "a"]}),
    ("empty program", "execute", {"command": [""]}),
    ("PATH", "execute", {"command": ["ls"], "env": {"PATH": "{evil_dir}"}}),
    ("LD_PRELOAD", "execute", {"command": ["ls"], "env": {"LD_PRELOAD": "{evil_tool}"}}),
    ("LD_AUDIT", "execute", {"command": ["ls"], "env": {"LD_AUDIT": "{evil_tool}"}}),
    ("BASH_ENV", "execute", {"command": ["{tool}"], "env": {"BASH_ENV": "{evil_tool}"}}),
    (
        "exported bash function",
        "execute",
        {"command": ["{tool}"], "env": {"BASH_FUNC_echo%%": "() {{ touch {marker}; }}"}},
    ),
    ("SHELLOPTS", "execute", {"command": ["{tool}"], "env": {"SHELLOPTS": "xtrace"}}),
    ("IFS", "execute", {"command": ["{tool}"], "env": {"IFS": "/"}}),
    ("PYTHONPATH", "execute", {"command": ["ls"], "env": {"PYTHONPATH": "{evil_dir}"}}),
    ("claude: PYTHONPATH", "execute_claude", {"prompt": "hi", "env": {"PYTHONPATH": "{evil_dir}"}}),
    ("claude: PATH", "execute_claude", {"prompt": "hi", "env": {"PATH": "{evil_dir}"}}),
    ("claude: NODE_OPTIONS", "execute_claude", {"prompt": "hi", "env": {"NODE_OPTIONS": "-r x"}}),
    (
        "claude: LD_PRELOAD",
        "execute_claude",
        {"prompt": "hi", "env": {"LD_PRELOAD": "{evil_tool}"}},
    ),
]


def _fill(v: Any, subs: dict[str, Any]) -> Any:
    if isinstance(v, str):
        return v.format(**subs)
    if isinstance(v, list):
        return [_fill(x, subs) for x in v]
    if isinstance(v, dict):
        return {_fill(k, subs): _fill(x, subs) for k, x in v.items()}
    return v


async def test_allow_list_bypass_attempts(make_svc: MakeSvc, tmp_path: Path, mark: str) -> None:
    subs = _evil(tmp_path)
    allowed = ["echo", "ls", "false", subs["tool"], str(FAKE_CLAUDE)]
    svc = await make_svc(
        CC_EXECUTOR_ALLOWED_COMMANDS=json.dumps(allowed),
        CC_EXECUTOR_ALLOWED_ENV='["CC_STRESS_MARK"]',  # the process-table scans need it
    )
    row = REPORT.row(f"allow-list bypass attempts: {len(ATTEMPTS)}")
    t0 = time.monotonic()
    got: dict[str, Any] = {}
    async with svc.client() as c:
        for label, method, params in ATTEMPTS:
            p = _fill(params, subs)
            p.setdefault("env", {})["CC_STRESS_MARK"] = mark
            try:
                got[label] = await c.call(method, p)
            except ProtocolError as exc:
                got[label] = exc.code
        # The allow-listed forms still run (the list is not simply refusing everything).
        ok = await c.execute([subs["tool"]], env={"CC_STRESS_MARK": mark})
        assert (await ok.wait(30))["status"] == "completed"
        assert await c.read_output(ok.task_id) == b"tool ran\n"
        claude = await c.execute_claude("allowed", env={"CC_STRESS_MARK": mark})
        assert (await claude.wait(60))["status"] == "completed"
        stats = (await c.status())["stats"]
    left = await leftovers(mark, [])
    bypassed = {
        k: v
        for k, v in got.items()
        if v != ErrorCode.COMMAND_NOT_ALLOWED
        and not (k in INVALID_ANYWAY and v == ErrorCode.INVALID_PARAMS)
    }
    row.tasks = len(ATTEMPTS)
    pwned = _exists(subs["marker"])
    row.failures = len(bypassed) + pwned
    row.leftovers = len(left)
    row.max_rss = svc.sample_rss()
    row.wall_s = time.monotonic() - t0
    assert not bypassed, bypassed
    assert not pwned, "an attempt ran its payload"
    assert stats["tasks_started"] == 2  # only the two allowed runs
    assert not left, left


def _exists(path: str) -> bool:
    return os.path.exists(path)


# ------------------------------------------------------------------ origins and tokens


async def test_foreign_origins_and_bad_tokens_cannot_connect(make_svc: MakeSvc) -> None:
    svc = await make_svc()
    row = REPORT.row("foreign origins / bad tokens")
    t0 = time.monotonic()
    port, token = svc.port, svc.token
    good = {"Authorization": f"Bearer {token}"}
    origins = [
        "null",
        "http://evil.example",
        f"http://127.0.0.1:{port}.evil.example",
        f"http://evil.example/http://127.0.0.1:{port}",
        f"http://127.0.0.1:{port + 1}",
        f"https://127.0.0.1:{port}",
        f"http://localhost.evil.example:{port}",
        f"http://127.0.0.1:{port}@evil.example",
        "file://",
        "chrome-extension://abcdefghijklmnop",
    ]
    tokens: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {token[:-1]}"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Bearer {token.upper()}"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": f"Token {token}"},
        {"Authorization": "Bearer " + "a" * 10_000},
        {"Authorization": f"Bearer {token}\u00e9".encode().decode("latin-1")},
    ]
    url_tokens = ["", "?token=", f"?token={token[:-1]}", f"?token={token}%00", "?token[]=x"]
    checks: list[tuple[str, Any]] = []
    for o in origins:
        checks.append(
            (f"origin {o!r}", _handshake(svc.url, additional_headers={**good, "Origin": o}))
        )
        checks.append(
            (f"origin {o!r} + query token", _handshake(f"{svc.url}?token={token}", origin=o))
        )
    for h in tokens:
        checks.append((f"headers {str(h)[:40]}", _handshake(svc.url, additional_headers=h)))
    for q in url_tokens:
        checks.append((f"url {q!r}", _handshake(svc.url + q)))
    codes = await asyncio.gather(*(c for _, c in checks), return_exceptions=True)
    results = {label: code for (label, _), code in zip(checks, codes, strict=True)}
    # 431: a header too large for the HTTP parser is refused before any check.
    admitted = {
        k: v
        for k, v in results.items()
        if v not in (401, 403, 431) and not isinstance(v, Exception)
    }
    errors = {k: repr(v) for k, v in results.items() if isinstance(v, Exception)}
    assert await _handshake(svc.url, additional_headers=good) == 101  # the control case
    row.tasks = len(checks)
    row.failures = len(admitted)
    row.max_rss = svc.sample_rss()
    row.wall_s = time.monotonic() - t0
    assert not admitted, admitted
    for label, code in results.items():
        if isinstance(code, int) and label.startswith("origin"):
            assert code == 403, (label, code)
    # A header the HTTP client refuses to send is not a gap in the service.
    assert all("InvalidHeader" in e or "ValueError" in e for e in errors.values()), errors
