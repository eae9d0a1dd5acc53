"""A request the service refuses as invalid params reads as one line per problem, the
field named as it was given on the command line (not pydantic's report)."""

from __future__ import annotations

from cc_executor.cli.common import EXIT_SERVICE_ERROR

from .conftest import Cli


async def test_a_check_across_options_reads_as_one_line(cli: Cli) -> None:
    r = await cli("claude", "--fork-session", "hello")
    assert r.rc == EXIT_SERVICE_ERROR
    assert r.stderr == "error: fork_session requires resume\n"


async def test_a_refused_option_is_named_as_its_flag(cli: Cli) -> None:
    r = await cli("run", "--workspace", "worktree", "--base-ref", "..x", "--", "true")
    assert r.rc == EXIT_SERVICE_ERROR
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: --base-ref: base_ref '..x' cannot be used"), line
