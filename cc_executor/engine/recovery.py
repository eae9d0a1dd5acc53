"""Recovery at start: reconcile this node's records with what is really running.

A record this node left `running` or `paused` when it stopped without ending its tasks
(a SIGKILL, a power cut) is marked `lost`, and its process group is killed if it is
still there (after checking the leader's start time, so a reused pid is never hit); a
record left `queued` is marked `cancelled`. In a store shared with other nodes, their
records are not touched: only the node that ran a task may say it is gone. A store of
this engine's own (its locked data dir) holds only its records, whatever node name an
earlier run gave them (the default name has the port in it). Spawns the store had not
heard of yet are in the spawn journal (engine/journal.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from cc_executor.engine import process
from cc_executor.engine.journal import SpawnJournal, kill_tagged
from cc_executor.engine.lifecycle import transition
from cc_executor.engine.records import TaskRecord
from cc_executor.engine.store import TaskStore
from cc_executor.protocol import Stream, TaskStatus

log = logging.getLogger(__name__)

_UNFINISHED = [TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.QUEUED]


async def recover(
    store: TaskStore,
    journal: SpawnJournal,
    log_path: Callable[[str, Stream], Path],
    node: str,
    recover_hooks: Callable[[Mapping[str, TaskRecord]], Awaitable[None]],
    owns_unassigned: bool = True,
) -> int:
    """Mark this node's unfinished records lost/cancelled; returns how many were lost.

    `owns_unassigned`: a record with no node is this engine's queued task. Not so in a
    cluster, where it waits in the shared queue for any node (cc_executor/cluster/queue.py).
    """
    mine = (None, node) if owns_unassigned else (node,)
    stale = [
        r
        for r in await store.list(limit=1_000_000, statuses=_UNFINISHED)
        if not store.shared or r.node in mine
    ]
    # Groups spawned just before a crash may be missing from the store, or still
    # `queued` there: the spawn journal knows them (see engine/journal.py).
    by_id = {r.task_id: r for r in stale}
    spawned_at_crash = journal.read()
    cut_short = [r.task_id for r in spawned_at_crash.values() if r.pid is None]
    if cut_short and kill_tagged(cut_short):
        log.warning("killed the groups of spawns a crash interrupted: %s", cut_short)
    for spawned in spawned_at_crash.values():
        known = by_id.get(spawned.task_id)
        if known is not None and known.status != TaskStatus.QUEUED:
            continue
        if known is None:
            stored = await store.get(spawned.task_id)
            if stored is not None and stored.status.is_final:
                if stored.status == TaskStatus.LOST and spawned.pgid and spawned.pid:
                    # Declared lost by another node while this one was gone (a cluster):
                    # the record stays as it is; what is left of its group goes.
                    process.reap_stale_group(spawned.pgid, spawned.pid, spawned.start_ticks)
                continue
        spawned.status = TaskStatus.RUNNING  # spawned, or being spawned, at the crash
        spawned.node = node
        by_id[spawned.task_id] = spawned
    await recover_hooks(by_id)  # hooks the crash left running (hooks.py)
    # What left the groups (setsid, daemons) outlived the crash too: it carries the tag.
    escaped = await process.end_tagged(by_id, grace=0, everywhere=True)
    if escaped:
        log.warning("killed %d processes that had left the groups of lost tasks", escaped)
    lost = 0
    now = time.time()
    for rec in by_id.values():
        if rec.status == TaskStatus.QUEUED:
            transition(rec, TaskStatus.CANCELLED)
            rec.error = "the service stopped before this queued task started"
        else:
            await _mark_lost(rec, log_path)
            lost += 1
        rec.ended_at = now
        store.save(rec)
    if by_id:
        await store.flush()
        log.info("marked %d tasks from a previous run as lost/cancelled", len(by_id))
    return lost


async def _mark_lost(rec: TaskRecord, log_path: Callable[[str, Stream], Path]) -> None:
    killed = False
    if rec.pgid is not None and rec.pid is not None:
        killed = process.reap_stale_group(rec.pgid, rec.pid, rec.start_ticks)
        if killed:  # SIGKILL is not death: serve only once the group is gone
            await process.wait_group_gone(rec.pgid, timeout=5.0)
    transition(rec, TaskStatus.LOST)
    rec.error = "the service stopped while this task was running" + (
        "; its leftover processes were killed" if killed else ""
    )
    for stream in Stream:
        with contextlib.suppress(OSError):
            setattr(rec, f"{stream.value}_bytes", log_path(rec.task_id, stream).stat().st_size)
