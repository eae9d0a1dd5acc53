"""The `cc-executor` parser: the Claude options come from `ClaudeOptions`, every option has
help, and the console script's entry point is the package's `main`."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

from cc_executor import __version__
from cc_executor.cli import build_parser, main
from cc_executor.cli.options import flag_of
from cc_executor.protocol import ClaudeOptions, SessionCreateParams

ROOT = Path(__file__).resolve().parents[2]


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def every_parser() -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    todo = [("cc-executor", build_parser())]
    while todo:
        name, parser = todo.pop()
        found[name] = parser
        todo.extend((f"{name} {n}", p) for n, p in subparsers(parser).items())
    return found


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{name} {a.option_strings or a.dest}"
        for name, parser in every_parser().items()
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction) and not a.help
    ]
    assert not missing, missing


def test_the_claude_command_offers_every_claude_option() -> None:
    claude = every_parser()["cc-executor claude"]
    assert {flag_of(n) for n in ClaudeOptions.model_fields} <= flags(claude)
    for name, field in ClaudeOptions.model_fields.items():
        action = next(a for a in claude._actions if flag_of(name) in a.option_strings)
        assert action.dest == name
        assert field.description and action.help and action.help.startswith(field.description)


def test_sessions_create_offers_every_claude_option_and_its_own() -> None:
    create = every_parser()["cc-executor sessions create"]
    wanted = {flag_of(n) for n in SessionCreateParams.model_fields if n != "working_dir"}
    assert wanted <= flags(create)
    assert "--turn-max-turns" in wanted and "--watch" in wanted and "--max-turns" in wanted
    max_turns = next(a for a in create._actions if "--max-turns" in a.option_strings)
    assert max_turns.help and max_turns.help.startswith("Watch mode")  # not claude's


def test_the_console_script_runs_the_packages_main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["cc-executor"] == "cc_executor.cli:main"
    script = Path(sys.executable).parent / "cc-executor"
    res = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout == f"cc-executor {__version__}\n"
    assert main([]) == 2  # no command: help on stderr, exit 2
