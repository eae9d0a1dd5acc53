"""While a Claude task runs, its record shows the model and the turns so far (the
dashboard's live cost column); the result's values replace them at the end."""

from __future__ import annotations

from pathlib import Path

from cc_executor.client import ExecutorClient
from tests.support import eventually


async def test_a_running_claude_task_shows_its_model_and_turns_so_far(
    client: ExecutorClient, fake_claude_state: Path
) -> None:
    task = await client.execute_claude("work FAKE_TOOL_USE FAKE_SLOW=0.5")
    live = await eventually(
        lambda: client.status(task.task_id),
        lambda r: r["status"] == "running" and r.get("num_turns") == 1,
    )
    assert live["model"] and live.get("total_cost_usd") is None
    done = await task.wait(30)
    assert done["status"] == "completed"
    final = await client.status(task.task_id)
    assert final["num_turns"] == 2 and final["total_cost_usd"] is not None
