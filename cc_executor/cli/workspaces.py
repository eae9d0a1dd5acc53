"""`cc-executor workspaces ...`: the git worktrees tasks and sessions work in.

    cc-executor workspaces list [--all]                    worktrees, newest first
    cc-executor workspaces diff (TASK | --session S)       its whole diff, to stdout
    cc-executor workspaces remove (TASK | --session S) [--delete-branch]

TASK is a task id (a session turn's task names its session's worktree); S is a session id
or name. Each command is one `workspace.*` call (docs/workspaces.md). `diff` writes the
diff byte for byte (pipe it to `git apply`); `--json` prints the replies instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cc_executor.cli.common import COMMON, EXIT_USAGE, CliError, connected, out, print_json
from cc_executor.cli.refs import TASK_HELP, resolve_task
from cc_executor.client import ExecutorClient, output_bytes
from cc_executor.protocol import Method

_PAGE = 4 * 1024 * 1024


def _owner(args: argparse.Namespace) -> dict[str, Any]:
    if (args.task is None) == (args.session is None):
        raise CliError(EXIT_USAGE, "error: give a TASK or --session SESSION (one)")
    return {"task_id": args.task} if args.task is not None else {"session_id": args.session}


async def _resolved(client: ExecutorClient, owner: dict[str, Any]) -> dict[str, Any]:
    """TASK by a unique id prefix or a name too (faces: cli/refs.py)."""
    if "task_id" in owner:
        return {"task_id": await resolve_task(client, owner["task_id"])}
    return owner


def _changes(w: dict[str, Any]) -> str:
    if "changed" not in w:
        return "-"
    if not w["changed"]:
        return "no change"
    parts = [f"{w['files_changed']} files +{w['lines_added']} -{w['lines_removed']}"]
    n = w["commits"]["count"]
    if n:
        parts.append(f"{n} commit{'s' if n != 1 else ''}")
    if w.get("uncommitted"):
        parts.append("uncommitted")
    return ", ".join(parts)


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'OWNER':<18}  {'STATE':<7}  {'TASK':<9}  {'BRANCH':<24}  CHANGES / PATH"]
    for w in rows:
        owner = w["id"] if w["owner"] == "task" else f"session {w['id']}"
        lines.append(
            f"{owner:<18}  {w['state']:<7}  {w.get('task_status') or '-':<9}  "
            f"{w['branch']:<24}  {_changes(w)}  {w['path']}"
        )
    return "\n".join(lines)


async def _cmd_list(args: argparse.Namespace) -> int:
    async with connected(args) as client:
        res = await client.call(Method.WORKSPACE_LIST, {"include_removed": args.all})
    if args.json:
        print_json(res)
    elif res["workspaces"]:
        out(_table(res["workspaces"]))
    else:
        out("no workspaces" if args.all else "no workspaces (--all shows removed ones)")
    return 0


async def _cmd_diff(args: argparse.Namespace) -> int:
    owner = _owner(args)
    async with connected(args) as client:
        owner = await _resolved(client, owner)
        offset = 0
        while True:
            page = await client.call(
                Method.WORKSPACE_DIFF, {**owner, "offset": offset, "limit": _PAGE}
            )
            if args.json:
                print_json(page)
            else:
                sys.stdout.buffer.write(output_bytes(page))
            offset += page["size"]
            if page["eof"] or page["size"] == 0:
                break
    sys.stdout.flush()
    return 0


async def _cmd_remove(args: argparse.Namespace) -> int:
    owner = _owner(args)
    async with connected(args) as client:
        params = {**await _resolved(client, owner), "delete_branch": args.delete_branch}
        res = await client.call(Method.WORKSPACE_REMOVE, params)
    if args.json:
        print_json(res)
        return 0
    what = "removed" if res["removed"] else "was already removed"
    branch = "deleted" if res["branch_deleted"] else "kept"
    out(f"worktree {res['path']} {what}; branch {res['branch']} {branch}")
    if not res["branch_deleted"]:  # the service's message names the param, not the option
        out(f"branch {res['branch']} holds work (or is checked out): --delete-branch deletes it")
    return 0


def add_workspaces_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `workspaces list|diff|remove`."""
    top = subparsers.add_parser(
        "workspaces",
        help="git worktrees of tasks and sessions: list, diff, remove",
        description="The worktrees tasks and sessions started with --workspace worktree run "
        "in, each on a branch ccx/<name>. See docs/workspaces.md.",
    )
    sub = top.add_subparsers(dest="workspaces_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", parents=COMMON, help="worktrees, newest first, with changes")
    p.add_argument("--all", action="store_true", help="include removed worktrees")
    p.set_defaults(func=_cmd_list)

    for name, help_text, func in (
        ("diff", "print the diff of everything it changed (to git apply)", _cmd_diff),
        ("remove", "remove the worktree of an ended task or session", _cmd_remove),
    ):
        p = sub.add_parser(name, parents=COMMON, help=help_text)
        p.add_argument("task", metavar="TASK", nargs="?", help=TASK_HELP)
        p.add_argument("--session", metavar="SESSION", help="a session id or name")
        if name == "remove":
            p.add_argument(
                "--delete-branch",
                action="store_true",
                help="also delete its branch when it holds commits",
            )
        p.set_defaults(func=func)
