"""Serving output: subscriptions (cursors into a task's logs) and `output` range reads.

The same mechanism serves a live task and a finished one: a subscriber follows an
`OutputLog` from an offset (see engine/events.py); a finished task's log is a read-only
view of its file (a task is final only once its log is flushed).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cc_executor.engine.events import Event, Subscriber
from cc_executor.engine.output import OutputLog, encode_data, incomplete_utf8_tail
from cc_executor.engine.records import TaskRecord
from cc_executor.engine.task import RunningTask
from cc_executor.protocol import Notification, Stream


class OutputServing:
    """The engine's output-serving methods (a mixin of `Engine`)."""

    _live: dict[str, RunningTask]

    def log_path(self, task_id: str, stream: Stream) -> Path:
        raise NotImplementedError

    async def get(self, task_id: str) -> TaskRecord:
        raise NotImplementedError

    def subscribe(
        self,
        task_id: str,
        subscriber: Subscriber,
        from_offset: int | None = None,
        stderr_from_offset: int | None = None,
    ) -> TaskRecord | None:
        """Follow a live task from the given offsets (None: from the live end on).

        Returns the record, or None if the task is not live (the caller then follows the
        finished log with `replay_finished`).
        """
        task = self._live.get(task_id)
        if task is None:
            return None
        for stream, start in ((Stream.STDOUT, from_offset), (Stream.STDERR, stderr_from_offset)):
            out = task.streams.get(stream)
            if start is not None and out is not None:
                subscriber.follow(task_id, stream, out, start)
        task.subscribers.add(subscriber)
        return task.current_record()

    def replay_finished(
        self,
        record: TaskRecord,
        subscriber: Subscriber,
        from_offset: int | None,
        stderr_from_offset: int | None,
    ) -> None:
        """Read a finished task's log from the offsets, then its completion."""
        for stream, start in ((Stream.STDOUT, from_offset), (Stream.STDERR, stderr_from_offset)):
            if start is not None:
                subscriber.follow(record.task_id, stream, self.log_of(record, stream), start)
        subscriber.push(Event(Notification.COMPLETED, record.completed_params()))

    def log_of(self, record: TaskRecord, stream: Stream) -> OutputLog:
        """The log of one of a task's streams, live or finished."""
        task = self._live.get(record.task_id)
        if task is not None and stream in task.streams:
            return task.streams[stream]
        size = getattr(record, f"{stream.value}_bytes")
        return OutputLog.finished(self.log_path(record.task_id, stream), size)

    def unsubscribe(self, task_id: str, subscriber: Subscriber) -> bool:
        task = self._live.get(task_id)
        if task is None or subscriber not in task.subscribers:
            return False
        task.subscribers.discard(subscriber)
        subscriber.forget(task_id)
        return True

    async def read_output(
        self, task_id: str, stream: Stream, offset: int, limit: int
    ) -> dict[str, Any]:
        """A byte-exact slice of a task's complete output, read from its log."""
        rec = await self.get(task_id)
        out = self.log_of(rec, stream)
        total = out.offset if out.failed_at is None else out.failed_at
        if out.closed and out.flushed:
            # A finished log on disk: a file shorter than the record says (a log that
            # failed to write, or was removed) reads as what is there.
            try:
                total = min(total, self.log_path(task_id, stream).stat().st_size)
            except FileNotFoundError:
                total = 0
            except OSError:
                pass
        data = await asyncio.get_running_loop().run_in_executor(None, out.read, offset, limit)
        data = data or b""
        # Keep text text: do not end a slice inside a UTF-8 character when more follows.
        if offset + len(data) < total:
            cut = incomplete_utf8_tail(data)
            if cut and cut < len(data):
                data = data[:-cut]
        text, encoding = encode_data(data)
        return {
            "task_id": task_id,
            "stream": stream.value,
            "offset": offset,
            "size": len(data),
            "total": total,
            "data": text,
            "encoding": encoding or "utf-8",
            "eof": offset + len(data) >= total and rec.status.is_final,
            "status": str(rec.status),
        }
