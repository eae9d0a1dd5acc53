"""The service token: configured, or generated once and kept in the data dir (mode 0600)."""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from pathlib import Path

from cc_executor.config import Settings
from cc_executor.engine.datadir import private_dir


def read_token(settings: Settings) -> str | None:
    """The token a client should present: configured, else the one in the data dir."""
    if settings.auth_token:
        return settings.auth_token
    try:
        return settings.token_file.read_text().strip() or None
    except OSError:
        return None


def ensure_token(settings: Settings) -> str:
    """The service's token, creating and storing one (0600) on first start."""
    token = read_token(settings)
    if token:
        return token
    path: Path = settings.token_file
    private_dir(path.parent)
    token = secrets.token_hex(32)  # hex: never starts with "-", which CLIs would misparse
    tmp = path.with_name(f".token.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, token.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # Two services starting at once: the first token written wins, both use it.
        os.link(tmp, path)
    except FileExistsError:
        token = path.read_text().strip()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return token


def token_matches(expected: str, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
