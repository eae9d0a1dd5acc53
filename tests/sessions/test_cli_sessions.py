"""`cc-executor sessions ...` against the real service: parse, call, print, exit code."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from cc_executor.cli.sessions import add_sessions_parser
from cc_executor.protocol import ErrorCode, ProtocolError
from cc_executor.server import ExecutorService

pytestmark = pytest.mark.usefixtures("fake_claude_state")


def parser() -> argparse.ArgumentParser:
    """A CLI like `cc-executor`'s: --url/--token on top, then the sessions subcommand."""
    p = argparse.ArgumentParser(prog="cc-executor")
    p.add_argument("--url")
    p.add_argument("--token")
    add_sessions_parser(p.add_subparsers(dest="subcommand"))
    return p


class Cli:
    def __init__(self, service: ExecutorService, capsys: pytest.CaptureFixture[str]) -> None:
        self.service = service
        self.capsys = capsys

    async def run(self, *argv: str) -> tuple[int, str, str]:
        args = parser().parse_args(
            ["--url", self.service.url, "--token", self.service.token, "sessions", *argv]
        )
        code = await args.func(args)
        out, err = self.capsys.readouterr()
        return code, out, err

    async def json(self, *argv: str) -> Any:
        code, out, _ = await self.run(*argv, "--json")
        assert code == 0, out
        return json.loads(out)


@pytest.fixture
def cli(service: ExecutorService, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(service, capsys)


async def test_every_sessions_command(cli: Cli, tmp_path: Path) -> None:
    fe, be = tmp_path / "fe", tmp_path / "be"
    fe.mkdir()
    be.mkdir()
    created = await cli.json("create", str(fe), "--name", "fe", "--allowed-tools", "Read,Edit")
    assert created["claude_options"]["allowed_tools"] == ["Read", "Edit"]
    assert created["name"] == "fe"
    code, out, _ = await cli.run("create", str(be), "--name", "be", "--prompt", "set up")
    assert code == 0 and "created session" in out and "(be)" in out and "turn 1" in out

    code, out, _ = await cli.run("send", "fe", "build the form", "--wait")
    assert code == 0 and out == "Fake Claude answer to: build the form\n"
    sent = await cli.json("send", "be", "hello from fe", "--from", "fe", "--wait")
    assert sent["status"] == "completed" and sent["message_id"]

    code, out, _ = await cli.run("list")
    assert code == 0 and "fe" in out and "be" in out and "2 active, 2 total" in out
    code, out, _ = await cli.run("status", "be")
    assert code == 0 and "messages_in: 1" in out and "status" not in out.splitlines()[1]
    code, out, _ = await cli.run("logs", "be", "--lines", "2")
    assert code == 0 and f"message from {created['session_id']}: hello from fe" in out
    assert "> hello from fe" in out

    res = await cli.json(
        "coordinate", "Ship login", "--assign", "fe=the form", "--assign", "be=the endpoint"
    )
    assert res["status"] == "completed" and len(res["results"]) == 2
    code, out, _ = await cli.run(
        "coordinate",
        "Round two",
        '{"fe": "polish FAKE_HANG"}',
        "--timeout",
        "0.5",
        "--cancel-on-timeout",
    )
    assert code == 1 and "timed out after 0.5s" in out

    code, out, err = await cli.run(
        "spawn-temp", "--command", "echo temp-run", "--working-dir", str(tmp_path)
    )
    assert code == 0 and out == "temp-run\n" and "completed" in err

    code, out, _ = await cli.run("kill", "fe")
    assert code == 0 and "ended" in out
    code, out, _ = await cli.run("list", "--all")
    assert "1 active, 3 total" in out

    with pytest.raises(ProtocolError) as exc:  # cli.main prints it and exits 2
        await cli.run("status", "s-unknown")
    assert exc.value.code == ErrorCode.SESSION_NOT_FOUND


def test_parser_rejects_a_bad_assignment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["sessions", "coordinate", "x", "--assign", "no-equals-sign"])
    assert "SESSION=SUBTASK" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser().parse_args(["sessions"])


async def test_create_gives_every_turn_the_claude_options(cli: Cli, tmp_path: Path) -> None:
    created = await cli.json(
        "create",
        str(tmp_path),
        "--name",
        "opts",
        "--max-turns",
        "2",  # watch mode's limit
        "--turn-max-turns",
        "4",  # each turn's --max-turns
        "--max-budget-usd",
        "1.5",
        "--add-dir",
        "/tmp",
        "--allowed-tools",
        "Read,Edit",
        "--permission-mode",
        "acceptEdits",
    )
    assert created["max_turns"] == 2 and created["claude_options"]["max_turns"] == 4
    reply = await cli.json("send", "opts", "FAKE_ECHO_OPTIONS", "--wait")
    options = json.loads(reply["result"])["options"]
    assert options["max_turns"] == "4" and float(options["max_budget_usd"]) == 1.5
    assert options["add_dirs"] == ["/tmp"] and options["allowed_tools"] == ["Read,Edit"]
    assert options["permission_mode"] == "acceptEdits"


def test_a_bad_option_is_refused_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["sessions", "create", "/tmp", "--turn-max-turns", "0"])
    assert "argument --turn-max-turns: " in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "hot"), [([], True), (["--no-hot"], False), (["--hot"], True)])
async def test_hot_sessions_setting_is_the_default_and_no_hot_opts_out(
    cli: Cli, service: ExecutorService, tmp_path: Path, flag: list[str], hot: bool
) -> None:
    service.sessions.settings.hot_sessions = True  # the service-wide default
    s = await cli.json("create", str(tmp_path), *flag)
    assert s["hot"] is hot
    turn = await cli.json("send", s["session_id"], "hello", "--wait")
    rec = await service.engine.get(turn["task_id"])
    assert (rec.extra.get("hot_session") == s["session_id"]) is hot
    await cli.json("kill", s["session_id"])
