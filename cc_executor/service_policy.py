"""The service's policy, as others may know it: what it lets run, beyond its own process.

The bridge's local fallback runs tasks in-process when the service does not answer; it
must never run what the service would refuse. So the service tells its effective policy
(every setting that decides what may run: the allow-lists, the claude restrictions, the
longest timeout, the pre-execute hooks that may veto a task) in two ways: it writes it to
`<data_dir>/policy.json` (0600, atomically) at start, and it answers it in `ping`
(`policy`), where a connected client learns it. The fallback applies the strictest of
what it knows (`strictest`): the learned policy, the file, and its own settings.

When the fallback cannot know the policy (a policy file it cannot read or parse, or a
policy of a version or shape it does not understand), it refuses to run anything
(`PolicyUnknown`): failing closed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from cc_executor.config import Settings

FILE_NAME = "policy.json"
VERSION: Final = 1


class PolicyUnknown(Exception):
    """The service's policy exists but cannot be known here: run nothing locally."""


class ServicePolicy(BaseModel):
    """Every setting of a service that decides what may run (see `cc_executor.policy`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = VERSION
    allowed_commands: tuple[str, ...] | None
    allowed_env: tuple[str, ...]
    shell: str
    claude_bin: str
    claude_trusted_dirs: tuple[str, ...]
    claude_allow_permission_bypass: bool
    strip_anthropic_api_key: bool
    max_timeout: float | None
    pre_execute_hooks: tuple[str, ...]

    @classmethod
    def of(cls, settings: Settings) -> ServicePolicy:
        """The policy these settings apply."""
        allowed = settings.allowed_commands
        return cls(
            allowed_commands=None if allowed is None else tuple(allowed),
            allowed_env=tuple(settings.allowed_env),
            shell=settings.shell,
            claude_bin=settings.claude_bin,
            claude_trusted_dirs=tuple(str(d) for d in settings.claude_trusted_dirs),
            claude_allow_permission_bypass=settings.claude_allow_permission_bypass,
            strip_anthropic_api_key=settings.strip_anthropic_api_key,
            max_timeout=settings.max_timeout,
            pre_execute_hooks=tuple(settings.hooks.pre_execute),
        )

    @classmethod
    def parse(cls, data: Any, source: str) -> ServicePolicy:
        """A policy from its JSON form; PolicyUnknown naming `source` if it is not one."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "policy"
            raise PolicyUnknown(
                f"the service's policy from {source} is not one this version understands "
                f"({where}: {first['msg']}): refusing to run locally"
            ) from None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def apply_to(self, settings: Settings) -> None:
        """Make `settings` (an engine's, shared by its parts) apply this policy, in place:
        what may run is read from them at each request."""
        allowed = self.allowed_commands
        settings.allowed_commands = None if allowed is None else list(allowed)
        settings.allowed_env = list(self.allowed_env)
        settings.shell = self.shell
        settings.claude_bin = self.claude_bin
        settings.claude_trusted_dirs = [Path(d) for d in self.claude_trusted_dirs]
        settings.claude_allow_permission_bypass = self.claude_allow_permission_bypass
        settings.strip_anthropic_api_key = self.strip_anthropic_api_key
        settings.max_timeout = self.max_timeout
        settings.hooks = settings.hooks.model_copy(
            update={"pre_execute": list(self.pre_execute_hooks)}
        )


def _common(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(x for x in a if x in b)


def strictest(first: ServicePolicy, *others: ServicePolicy) -> ServicePolicy:
    """What every one of these policies allows, and no more; the programs that run what is
    allowed (`shell`, `claude_bin`) are the first's (the service's).

    Lists are met entry by entry (a name in one and a path in the other meet in nothing:
    refused, not guessed); a timeout limit is the lowest; every pre-execute hook of every
    policy runs, the first's first.
    """
    out = first
    for other in others:
        allowed: tuple[str, ...] | None
        if out.allowed_commands is None:
            allowed = other.allowed_commands
        elif other.allowed_commands is None:
            allowed = out.allowed_commands
        else:
            allowed = _common(out.allowed_commands, other.allowed_commands)
        limits = [t for t in (out.max_timeout, other.max_timeout) if t is not None]
        hooks = out.pre_execute_hooks + tuple(
            h for h in other.pre_execute_hooks if h not in out.pre_execute_hooks
        )
        if out.allowed_commands is None and other.allowed_commands is not None:
            env = other.allowed_env  # only the side with an allow-list limits the env
        elif other.allowed_commands is None:
            env = out.allowed_env
        else:
            env = _common(out.allowed_env, other.allowed_env)
        out = out.model_copy(
            update={
                "allowed_commands": allowed,
                "allowed_env": env,
                "claude_trusted_dirs": _common(out.claude_trusted_dirs, other.claude_trusted_dirs),
                "claude_allow_permission_bypass": out.claude_allow_permission_bypass
                and other.claude_allow_permission_bypass,
                "strip_anthropic_api_key": out.strip_anthropic_api_key
                or other.strip_anthropic_api_key,
                "max_timeout": min(limits) if limits else None,
                "pre_execute_hooks": hooks,
            }
        )
    return out


# ------------------------------------------------------------------ the file


def policy_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def write(data_dir: Path, policy: ServicePolicy) -> None:
    """Write the policy file atomically, 0600. If it cannot be written (a full disk), an
    older one is emptied rather than left: a reader then refuses (fails closed) instead of
    applying a policy the service no longer has. Raises the OSError after that."""
    path = policy_path(data_dir)
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, orjson.dumps(policy.to_json(), option=orjson.OPT_INDENT_2))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        with contextlib.suppress(FileNotFoundError):
            os.truncate(path, 0)
        raise


def read(data_dir: Path) -> ServicePolicy | None:
    """The policy file of a data dir; None when there is none. PolicyUnknown when there
    is one that cannot be read or parsed."""
    path = policy_path(data_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PolicyUnknown(
            f"the service's policy could not be read from {path} ({exc.strerror}): "
            "refusing to run locally"
        ) from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise PolicyUnknown(
            f"the service's policy could not be read from {path} (not JSON): "
            "refusing to run locally"
        ) from None
    return ServicePolicy.parse(data, str(path))
