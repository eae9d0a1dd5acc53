"""Rate-limit windows: hold an account's Claude tasks until its limit resets.

When a subscription's window closes, every queued Claude agent of that account would start
only to fail. So, per account (its `CLAUDE_CONFIG_DIR`, or `default`), this keeps the last
`rate_limit_event` the CLI reported (status, type, resets at, overage) and, once a task ends
with `error_kind: rate_limit` and a known reset time, a **hold** until that time. Every
Claude task gets a `RateLimitGate` (`TaskSpec.gate`): while its account is held the engine
keeps it `queued`, its record saying `waiting_for: "rate_limit"` and `until` (ISO 8601), and
starts it when the hold ends; `control CANCEL` works on it as on any queued task. Plain
commands have no gate and are never held.

The table is one per runtime data dir (`RateLimits.of(settings)`): the engines of one
process (service, bridge fallback, Python API) each own a data dir, and each holds its own
queue. How it should plug into a shared queue: see docs/claude.md#rate-limit-windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cc_executor.claude.errors import reset_time

if TYPE_CHECKING:
    from cc_executor.config import Settings

DEFAULT_ACCOUNT = "default"


def account_of(env: Mapping[str, str]) -> str:
    """The account a Claude task runs as: its CLAUDE_CONFIG_DIR, else the default login."""
    return env.get("CLAUDE_CONFIG_DIR") or DEFAULT_ACCOUNT


def iso_time(ts: float) -> str:
    """A unix time as ISO 8601 UTC (`...Z`), as records and `status` show times."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class AccountLimit:
    """What is known of one account's rate limit."""

    last_event: dict[str, Any] | None = None  # the last rate_limit_event, in our words
    hold_until: float | None = None  # unix time: its Claude tasks wait until then

    def to_dict(self) -> dict[str, Any]:
        held = self.hold_until is not None and self.hold_until > time.time()
        return {
            "last_event": self.last_event,
            "held": held,
            "until": iso_time(self.hold_until) if held and self.hold_until else None,
        }


class RateLimits:
    """Per account: the last rate_limit_event and the hold after a rate-limited task."""

    _by_data_dir: dict[Path, RateLimits] = {}

    def __init__(self) -> None:
        self.accounts: dict[str, AccountLimit] = {}
        self._changed: asyncio.Event | None = None  # set when a hold moves

    def changed(self) -> asyncio.Event:
        """An event set at the next change of a hold (a new event after each change)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _moved(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    @classmethod
    def of(cls, settings: Settings) -> RateLimits:
        """The table of the runtime that owns `settings.data_dir`."""
        return cls._by_data_dir.setdefault(settings.data_dir, cls())

    def _account(self, account: str) -> AccountLimit:
        return self.accounts.setdefault(account, AccountLimit())

    def observe(self, account: str, info: Mapping[str, Any]) -> None:
        """A `rate_limit_event`'s `rate_limit_info` (allowed, warning or rejected)."""
        resets = info.get("resetsAt")
        self._account(account).last_event = {
            "status": info.get("status"),
            "type": info.get("rateLimitType"),
            "resets_at": iso_time(resets) if isinstance(resets, int | float) else None,
            "overage_status": info.get("overageStatus"),
            "using_overage": info.get("isUsingOverage"),
            "seen_at": iso_time(time.time()),
        }

    def rate_limited(self, account: str, reset_at: str | None) -> None:
        """A task of `account` ended `rate_limit`: hold the account until its reset."""
        if not reset_at:
            return  # no known reset: nothing to wait for, the tasks fail as they come
        when = reset_time(reset_at, datetime.now(UTC))
        if when is None or when.timestamp() <= time.time():
            return
        acc = self._account(account)
        acc.hold_until = max(acc.hold_until or 0.0, when.timestamp())
        self._moved()

    def held_until(self, account: str) -> float | None:
        acc = self.accounts.get(account)
        if acc is None or acc.hold_until is None:
            return None
        if acc.hold_until <= time.time():
            acc.hold_until = None
            return None
        return acc.hold_until

    def snapshot(self) -> dict[str, Any]:
        """For `status` stats and `/health`: every account seen, its last event and hold."""
        return {name: acc.to_dict() for name, acc in sorted(self.accounts.items())}


class RateLimitGate:
    """A Claude task's gate (`TaskSpec.gate`): closed while its account is held."""

    def __init__(self, limits: RateLimits, account: str) -> None:
        self.limits = limits
        self.account = account

    def holds(self) -> dict[str, Any] | None:
        """Why the task must wait now (`waiting_for`, `until`), or None."""
        until = self.limits.held_until(self.account)
        if until is None:
            return None
        return {"waiting_for": "rate_limit", "until": iso_time(until), "account": self.account}

    async def wait(self) -> None:
        """Return once the account is no longer held (a hold may move while it waits)."""
        while (until := self.limits.held_until(self.account)) is not None:
            changed = self.limits.changed()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max(0.0, until - time.time()))
