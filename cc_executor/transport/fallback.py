"""What a local fallback may run: never what the service would refuse.

`AutoTransport` runs work in this process while the service does not answer. It gives
its in-process side a `FallbackPolicy`, which says, before each call, which policy the
local engine applies: the strictest (`service_policy.strictest`) of the policy the
service told while connected (`ping`, remembered after it is gone), the service's policy
file (`<data_dir>/policy.json`, also when the service was never reached) and the local
engine's own settings. When the service's policy cannot be known (a policy file that
cannot be read or parsed, a policy of another version), nothing runs locally.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cc_executor import service_policy
from cc_executor.config import Settings
from cc_executor.protocol import READ_ONLY_METHODS, Method
from cc_executor.service_policy import PolicyUnknown, ServicePolicy

HARMLESS = READ_ONLY_METHODS | {Method.CONTROL}
"""Methods that start nothing: served locally even when the policy cannot be known (a
task that already runs there can still be read, or cancelled)."""


class FallbackPolicy:
    """The policy a local fallback applies now; `current()` raises PolicyUnknown when it
    must run nothing."""

    def __init__(
        self,
        own: Settings,
        data_dir: Path,
        learned: Callable[[], dict[str, Any] | None],
    ) -> None:
        self.own = ServicePolicy.of(own)
        self.data_dir = data_dir
        self._learned = learned
        # Each call asks: the answer is kept while what it was made of is unchanged (the
        # same learned object, the policy file with the same identity and mtime).
        self._told: dict[str, Any] | None = None
        self._file: tuple[int, ...] | None = None
        self._answer: ServicePolicy | PolicyUnknown | None = None

    @property
    def path(self) -> Path:
        return service_policy.policy_path(self.data_dir)

    def current(self) -> ServicePolicy:
        told = self._learned()
        try:
            st = os.stat(self.path)
            on_disk: tuple[int, ...] | None = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            on_disk = None
        except OSError:
            on_disk = (-1,)  # read() says why
        if self._answer is None or told is not self._told or on_disk != self._file:
            try:
                self._answer = self._compute(told)
            except PolicyUnknown as exc:
                self._answer = exc
            self._told, self._file = told, on_disk
        if isinstance(self._answer, PolicyUnknown):
            raise PolicyUnknown(str(self._answer))
        return self._answer

    def _compute(self, told: dict[str, Any] | None) -> ServicePolicy:
        known: list[ServicePolicy] = []
        if told is not None:
            known.append(ServicePolicy.parse(told, "the service's ping"))
        on_disk = service_policy.read(self.data_dir)  # PolicyUnknown: unreadable
        if on_disk is not None:
            known.append(on_disk)
        return service_policy.strictest(*known, self.own)


__all__ = ["HARMLESS", "FallbackPolicy", "PolicyUnknown"]
