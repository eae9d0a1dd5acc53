"""Git for workspaces: each command a helper child started through engine/process.py.

Argv lists only, never a shell; `--` before every path; refs reach git only after
`protocol.ref_problem` / `branch_name_problem` checked them, and are resolved to commit ids
(`rev-parse --verify --end-of-options`) before anything else uses them. A command runs like
a hook: its own process group, a time limit (TERM, then KILL), output to temporary files,
not pipes, so nothing it leaves behind can hold the service up.

A repository lock held by another git (`Unable to create '<path>.lock': File exists`) is
waited for, never removed or raced: `run_locked` runs the command again once that file is
gone, for at most `lock_wait` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from cc_executor.engine import process
from cc_executor.protocol import ErrorCode, ProtocolError

log = logging.getLogger(__name__)

GIT_TIMEOUT = 300.0
"""The most one git command may take (a worktree checkout of a large repository)."""

_LOCKED = re.compile(r"Unable to create '([^']+\.lock)': File exists")
_LOCK_POLL = 0.02

_REPO_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
)
"""Variables that would point git at another repository than the one asked about (a
service started from a git hook has some of them set)."""


class GitError(ProtocolError):
    """A git command failed for a reason the caller did not foresee: WORKSPACE_FAILED."""

    def __init__(self, message: str, data: object = None) -> None:
        super().__init__(ErrorCode.WORKSPACE_FAILED, message, data)


@dataclass(slots=True)
class GitResult:
    code: int
    stdout: bytes
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def text(self) -> str:
        """stdout as text without the final newline."""
        return self.stdout.decode("utf-8", "surrogateescape").rstrip("\n")

    def reason(self) -> str:
        """git's own explanation: the first `fatal:`/`error:` line, else its last line."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        for ln in lines:
            if ln.startswith(("fatal:", "error:")):
                return ln.split(":", 1)[1].strip()
        return lines[-1] if lines else f"git exited {self.code}"


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The service's environment for git: no repository redirection, C locale (its
    messages are parsed), no prompts, no optional locks (reads never take a lock)."""
    env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
    env.update(
        {
            "LC_ALL": "C",
            "LANGUAGE": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_OPTIONAL_LOCKS": "0",
        }
    )
    if extra:
        env.update(extra)
    return env


def _read(f: IO[bytes]) -> bytes:
    f.seek(0)
    return f.read()


class Git:
    """Runs git commands for the workspaces of one engine."""

    def __init__(
        self,
        *,
        binary: str = "git",
        timeout: float = GIT_TIMEOUT,
        grace: float = 5.0,
        lock_wait: float = 30.0,
    ) -> None:
        self.binary = binary
        self.timeout = timeout
        self.grace = grace
        self.lock_wait = lock_wait

    async def run(
        self, args: Sequence[str], cwd: str, env: Mapping[str, str] | None = None
    ) -> GitResult:
        """`git <args>` in `cwd`; its exit code, stdout and stderr (a failure is a result)."""
        argv = [self.binary, *args]
        with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
            try:
                proc = process.spawn(
                    argv,
                    cwd,
                    git_env(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out_f,
                    stderr=err_f,
                )
            except FileNotFoundError as exc:
                if exc.filename == cwd:
                    raise GitError(f"directory {cwd!r} does not exist", {"cwd": cwd}) from None
                raise GitError(f"git cannot be run ({self.binary!r}): {exc.strerror}") from None
            except OSError as exc:
                raise GitError(f"git cannot be run in {cwd!r}: {exc}") from None
            timed_out = await process.run_to_end(proc, self.timeout, self.grace)
            if timed_out:
                raise GitError(f"git {args[0]} took longer than {self.timeout:.0f} s in {cwd}")
            stdout, stderr = await asyncio.to_thread(lambda: (_read(out_f), _read(err_f)))
        return GitResult(proc.returncode, stdout, stderr.decode("utf-8", "replace"))

    async def run_locked(
        self, args: Sequence[str], cwd: str, env: Mapping[str, str] | None = None
    ) -> GitResult:
        """`run`, waiting out lock files another git holds (see the module's docstring)."""
        deadline = time.monotonic() + self.lock_wait
        while True:
            res = await self.run(args, cwd, env)
            m = None if res.ok else _LOCKED.search(res.stderr)
            if m is None:
                return res
            lock = m.group(1)
            log.info("waiting for %s: another git process holds it", lock)
            while await asyncio.to_thread(os.path.exists, lock):
                if time.monotonic() >= deadline:
                    raise GitError(
                        f"the repository is locked by another git process: {lock} has "
                        f"existed for {self.lock_wait:g} s (remove it only if no git runs)",
                        {"lock": lock},
                    )
                await asyncio.sleep(_LOCK_POLL)

    async def out(self, args: Sequence[str], cwd: str, env: Mapping[str, str] | None = None) -> str:
        """stdout of a command that must succeed (else GitError with git's reason)."""
        res = await self.run(args, cwd, env)
        if not res.ok:
            raise GitError(f"git {args[0]} failed in {cwd}: {res.reason()}", {"stderr": res.stderr})
        return res.text()
