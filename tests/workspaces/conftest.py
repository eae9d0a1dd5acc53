"""Real git repositories made by the tests, and what the tests ask git about them.

Git runs with an empty global config of the test's own and no system config (never the
user's), and with a fixed identity in the environment, which the service's children (the
tasks that commit) inherit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.dashboard.conftest import browser_errors, page, viewport  # noqa: F401 (fixtures)


@pytest.fixture(autouse=True)
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gitconfig"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test Author")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@example.invalid")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)


def git_bytes(cwd: Path | str, *args: str, stdin: bytes | None = None) -> bytes:
    """Run git in cwd (it must succeed) and return its stdout, byte for byte."""
    res = subprocess.run(
        ["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False, timeout=60
    )
    assert res.returncode == 0, f"git {' '.join(args)} failed: {res.stderr.decode()}"
    return res.stdout


def git(cwd: Path | str, *args: str) -> str:
    """Run git in cwd (it must succeed) and return its stdout."""
    return git_bytes(cwd, *args).decode()


def files_in(tree: Path | str) -> dict[str, str]:
    """Every file of a work tree (not its .git) and its text, by relative path."""
    root = Path(tree)
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def gone(path: Path | str) -> bool:
    return not Path(path).exists()


def mode_of(path: Path | str) -> int:
    return Path(path).stat().st_mode & 0o777


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with two commits: README.md and src/app.py."""
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "README.md").write_text("# demo\n")
    (r / "src").mkdir()
    (r / "src" / "app.py").write_text("print('hello')\n")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "initial")
    (r / "src" / "app.py").write_text("print('hello')\nprint('again')\n")
    git(r, "commit", "-q", "-am", "second")
    return r


def worktrees(repo: Path) -> list[str]:
    """The paths of `git worktree list`, the main work tree first."""
    out = git(repo, "worktree", "list", "--porcelain")
    return [ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("worktree ")]


def ccx_branches(repo: Path) -> list[str]:
    out = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/ccx/")
    return out.split()


def assert_clean(repo: Path, data_dir: Path) -> None:
    """Nothing of a workspace is left: no worktree, no ccx branch, no directory, no record."""
    assert worktrees(repo) == [str(repo)]
    assert ccx_branches(repo) == []
    left = data_dir / "worktrees"
    assert not left.exists() or not any(left.iterdir()), list(left.iterdir())
    records = data_dir / "workspaces"
    assert not records.exists() or not list(records.glob("*.json"))
