"""The Python API takes the same workspace params: its engine makes the worktree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import cc_executor
from cc_executor import api
from cc_executor.config import Settings
from tests.support import FAKE_CLAUDE
from tests.workspaces.conftest import ccx_branches, git, worktrees


@pytest.fixture
def api_data(tmp_path: Path) -> Iterator[Path]:
    cc_executor.shutdown()
    api._API.settings = None
    data = tmp_path / "api-data"
    cc_executor.configure(
        Settings(data_dir=data, claude_bin=str(FAKE_CLAUDE), kill_grace_seconds=1.0)
    )
    yield data
    cc_executor.shutdown()
    api._API.settings = None


def test_cc_execute_in_a_worktree(api_data: Path, repo: Path) -> None:
    r = cc_executor.cc_execute(
        command=["sh", "-c", "echo x > x.txt && git add x.txt && git commit -q -m 'add x'"],
        cwd=str(repo),
        workspace="worktree",
        name="from-api",
    )
    assert r.ok, r
    ws = r.record["workspace"]
    assert ws["branch"] == "ccx/from-api" and ws["state"] == "kept"
    assert Path(ws["path"]).parent == api_data / "api" / "worktrees"
    assert ws["commits"] == {"count": 1, "subjects": ["add x"]}
    assert [f["path"] for f in ws["files"]] == ["x.txt"] and ws["uncommitted"] is False
    assert ccx_branches(repo) == ["ccx/from-api"]
    assert git(repo, "show", "ccx/from-api:x.txt") == "x\n"


def test_a_claude_prompt_in_a_worktree(api_data: Path, repo: Path, fake_claude_state: Path) -> None:
    """cc_execute(prompt, workspace=...) is execute_claude's: the fake claude writes in its
    worktree of the repository, never in the repository itself."""
    r = cc_executor.cc_execute(
        "write it FAKE_WRITE=notes.txt",
        cwd=str(repo / "src"),
        workspace="worktree",
        workspace_keep="always",
    )
    assert r.ok, r
    ws = r.record["workspace"]
    assert r.record["cwd"] == ws["cwd"] == f"{ws['path']}/src"
    assert ws["files"] == [{"path": "src/notes.txt", "added": 1, "removed": 0, "uncommitted": True}]
    assert not (repo / "src" / "notes.txt").exists()
    assert worktrees(repo) == [str(repo), ws["path"]]
