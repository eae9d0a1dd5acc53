"""Stress fixtures: services as subprocesses, a per-test process marker, the summary table.

Run with `.venv/bin/python -m pytest -m stress` (short profile, the CI one) or
`CC_STRESS_PROFILE=full .venv/bin/python -m pytest -m stress` (full profile).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServiceProcess

from .support import REPORT, P, kill_marked, marked_processes, new_mark, stress_service


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT.rows:
        return
    tr = terminalreporter
    tr.write_sep("=", f"cc-executor stress summary (profile {P.name}, {os.cpu_count()} CPUs)")
    for line in REPORT.lines():
        tr.write_line(line)
    out = os.environ.get("CC_STRESS_REPORT")
    if out:
        rows = [asdict(r) for r in REPORT.rows]
        Path(out).write_text(json.dumps({"profile": P.name, "rows": rows}, indent=1))


@pytest.fixture
def mark() -> Iterator[str]:
    """A marker put in every task's environment: the process-table scans look for it."""
    m = new_mark()
    yield m
    if marked_processes(m):
        kill_marked(m)  # the test has already failed on them; do not leak them


MakeSvc = Callable[..., Awaitable[ServiceProcess]]


@pytest.fixture
async def make_svc(tmp_path: Path) -> AsyncIterator[MakeSvc]:
    """make_svc(**env) -> a started service subprocess with its own data dir; stopped after."""
    made: list[ServiceProcess] = []

    async def make(data_dir: Path | None = None, **env: str) -> ServiceProcess:
        n = len(made)
        svc = stress_service(data_dir or tmp_path / f"svc{n}", tmp_path / f"svc{n}.log", **env)
        await svc.start()
        made.append(svc)
        return svc

    yield make
    errors = []
    for svc in made:
        svc.stop()
        errors += svc.errors()
    # A traceback or an internal error in a service log is a defect, whatever the test saw.
    assert not errors, "\n".join(json.dumps(rec)[:2000] for rec in errors[:10])
