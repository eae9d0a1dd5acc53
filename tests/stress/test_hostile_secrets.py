"""Issue 17: the service's secrets stay in the service.

A service started with its token (and a Redis URL's worth of password) in its environment:
a task and a pre- and post-execute hook each write their whole environment to a file, and
none holds the token, the bridge's alias of it or the URL. The CLI reads the token from a
file (`--token-file`), so it never shows in `ps`: the run succeeds, the CLI's command line
has no token, and a wrong file is refused naming where the token came from.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.support import wait_until

from .conftest import MakeSvc

pytestmark = pytest.mark.stress

TOKEN = "s3cret-token-0123456789abcdef"
SECRETS = {
    "CC_EXECUTOR_AUTH_TOKEN": TOKEN,
    "CC_EXECUTOR_TOKEN": TOKEN,
}


async def test_tasks_and_hooks_see_no_service_secret(make_svc: MakeSvc, tmp_path: Path) -> None:
    pre, post = tmp_path / "pre.env", tmp_path / "post.env"
    svc = await make_svc(
        token=TOKEN,
        **SECRETS,
        CC_EXECUTOR_HOOKS__PRE_EXECUTE=json.dumps([f"env > {pre}"]),
        CC_EXECUTOR_HOOKS__POST_EXECUTE=json.dumps([f"env > {post}"]),
    )
    assert svc.env["CC_EXECUTOR_AUTH_TOKEN"] == TOKEN  # the service itself has it
    async with svc.client() as c:
        h = await c.execute("env")
        done = await h.wait(30)
        assert done["status"] == "completed", done
        task_env = (await c.read_output(h.task_id)).decode()
    await wait_until(post.exists, timeout=10, what="the post-execute hook ran")
    seen = {"task": task_env, "pre hook": pre.read_text(), "post hook": post.read_text()}
    for who, text in seen.items():
        assert "CC_EXECUTOR_TASK_ID=" in text, (who, text)  # it is the child's environment
        for name in SECRETS:
            assert f"{name}=" not in text, (who, name)
        assert TOKEN not in text, who


async def test_cli_takes_the_token_from_a_file(make_svc: MakeSvc, tmp_path: Path) -> None:
    svc = await make_svc()
    good = tmp_path / "token"
    good.write_text(svc.token + "\n")
    bad = tmp_path / "wrong"
    bad.write_text("not-the-token")
    env = {k: v for k, v in svc.env.items() if not k.startswith("CC_EXECUTOR_")}

    async def cli(*args: str) -> tuple[int, str, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cc_executor.cli", "--url", svc.url, *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )  # fmt: skip
        shown = await asyncio.to_thread(Path(f"/proc/{proc.pid}/cmdline").read_bytes)  # as ps
        cmdline = shown.replace(b"\0", b" ").decode()
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode(), cmdline

    code, out, err, cmdline = await cli("--token-file", str(good), "run", "-q", "echo", "hi")
    assert (code, out) == (0, "hi\n"), err
    assert svc.token not in cmdline and str(good) in cmdline

    code, out, err, _ = await cli("run", "--token-file", str(good), "-q", "echo", "after")
    assert (code, out) == (0, "after\n"), err  # after the subcommand too

    code, _, err, _ = await cli("--token-file", str(bad), "run", "-q", "true")
    assert code == 4 and f"--token-file {bad}" in err, err

    missing = tmp_path / "missing"
    code, _, err, _ = await cli("--token-file", str(missing), "run", "-q", "true")
    assert code == 2 and f"--token-file {missing}: cannot read the token" in err, err

    code, _, err, _ = await cli("--token", "x", "--token-file", str(good), "run", "true")
    assert code == 2 and "not both" in err, err
