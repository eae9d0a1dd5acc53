"""Where sessions, their turns and messages live. `SessionStore` is the small interface;
`SqliteSessionStore` keeps them in `<data_dir>/sessions.sqlite3`.

Same pattern as the task store: one connection on one writer thread, so the event loop
never waits on the disk. `save_*` only enqueue a snapshot (applied in order, consecutive
saves batched into one transaction); reads are answered by the same thread after every
earlier write, so a read always sees what was saved before it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from cc_executor.sessions.records import TURN_OPEN, Message, Session, Turn

log = logging.getLogger(__name__)
T = TypeVar("T")


class SessionStore(Protocol):
    async def open(self) -> None: ...
    def save_session(self, session: Session) -> None: ...
    def save_turn(self, turn: Turn) -> None: ...
    def save_message(self, message: Message) -> None: ...
    async def sessions(self) -> list[Session]: ...
    async def turns(self, session_id: str, limit: int) -> list[Turn]:
        """The session's newest `limit` turns, oldest first."""
        ...

    async def open_turns(self) -> list[Turn]:
        """Turns recorded as queued or running (after a crash: to reconcile)."""
        ...

    async def messages(self, session_id: str, limit: int) -> list[Message]:
        """The newest `limit` messages sent or received by the session, oldest first."""
        ...

    async def flush(self) -> None: ...
    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    session_id TEXT NOT NULL,
    turn INTEGER NOT NULL,
    status TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (session_id, turn)
);
CREATE INDEX IF NOT EXISTS turns_status ON turns(status);
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    from_session TEXT NOT NULL,
    to_session TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_from ON messages(from_session, created_at);
CREATE INDEX IF NOT EXISTS messages_to ON messages(to_session, created_at);
"""

_UPSERT_SESSION = (
    "INSERT INTO sessions(session_id, created_at, status, data) VALUES (?,?,?,?) "
    "ON CONFLICT(session_id) DO UPDATE SET status=excluded.status, data=excluded.data"
)
_UPSERT_TURN = (
    "INSERT INTO turns(session_id, turn, status, data) VALUES (?,?,?,?) "
    "ON CONFLICT(session_id, turn) DO UPDATE SET status=excluded.status, data=excluded.data"
)
_UPSERT_MESSAGE = (
    "INSERT INTO messages(message_id, created_at, from_session, to_session, data) "
    "VALUES (?,?,?,?,?) ON CONFLICT(message_id) DO UPDATE SET data=excluded.data"
)

_Op = tuple[str, Any, concurrent.futures.Future[Any] | None]


def _dumps(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj, default=str)


class SqliteSessionStore:
    """Sessions, turns and messages in one SQLite file, written by a dedicated thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ops: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self.write_errors = 0

    # -- thread side -------------------------------------------------------------------

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        except Exception as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        while True:
            op = self._ops.get()
            if op[0] != "write":
                if self._handle(op):
                    return
                continue
            # Batch every write already waiting into the same transaction.
            writes = [op[1]]
            nxt: _Op | None = None
            while True:
                try:
                    nxt = self._ops.get_nowait()
                except queue.Empty:
                    nxt = None
                    break
                if nxt[0] != "write":
                    break
                writes.append(nxt[1])
            self._write(writes)
            if nxt is not None and self._handle(nxt):
                return

    def _write(self, writes: list[tuple[str, tuple[Any, ...]]]) -> None:
        assert self._conn is not None
        try:
            with self._conn:
                self._conn.execute("BEGIN")
                for sql, row in writes:
                    self._conn.execute(sql, row)
        except sqlite3.Error as exc:
            self.write_errors += 1
            log.error("session store write failed: %s", exc)

    def _handle(self, op: _Op) -> bool:
        """Run a non-write op; True means stop the thread."""
        assert self._conn is not None
        kind, arg, fut = op
        if kind == "close":
            self._conn.close()
            if fut is not None:
                fut.set_result(None)
            return True
        fn: Callable[[sqlite3.Connection], Any] = arg
        try:
            result = fn(self._conn)
        except Exception as exc:
            if fut is not None:
                fut.set_exception(exc)
        else:
            if fut is not None:
                fut.set_result(result)
        return False

    # -- loop side ---------------------------------------------------------------------

    async def open(self) -> None:
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="cc-executor-sessions", daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(ready)

    def _put(self, sql: str, row: tuple[Any, ...]) -> None:
        self._ops.put(("write", (sql, row), None))

    def save_session(self, session: Session) -> None:
        self._put(
            _UPSERT_SESSION,
            (session.session_id, session.created_at, session.status, _dumps(session.to_dict())),
        )

    def save_turn(self, turn: Turn) -> None:
        self._put(_UPSERT_TURN, (turn.session_id, turn.turn, turn.status, _dumps(turn.to_dict())))

    def save_message(self, message: Message) -> None:
        row = (
            message.message_id,
            message.created_at,
            message.from_session,
            message.to_session,
            _dumps(message.to_dict()),
        )
        self._put(_UPSERT_MESSAGE, row)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed or self._thread is None:
            raise RuntimeError("the session store is not open")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._ops.put(("call", fn, fut))
        return await asyncio.wrap_future(fut)

    async def sessions(self) -> list[Session]:
        rows = await self._call(
            lambda c: c.execute("SELECT data FROM sessions ORDER BY created_at").fetchall()
        )
        return [Session.from_dict(orjson.loads(r[0])) for r in rows]

    async def turns(self, session_id: str, limit: int) -> list[Turn]:
        rows = await self._call(
            lambda c: c.execute(
                "SELECT data FROM turns WHERE session_id=? ORDER BY turn DESC LIMIT ?",
                (session_id, limit),
            ).fetchall()
        )
        return [Turn.from_dict(orjson.loads(r[0])) for r in reversed(rows)]

    async def open_turns(self) -> list[Turn]:
        marks = ",".join("?" * len(TURN_OPEN))
        rows = await self._call(
            lambda c: c.execute(
                f"SELECT data FROM turns WHERE status IN ({marks}) ORDER BY session_id, turn",
                tuple(TURN_OPEN),
            ).fetchall()
        )
        return [Turn.from_dict(orjson.loads(r[0])) for r in rows]

    async def messages(self, session_id: str, limit: int) -> list[Message]:
        rows = await self._call(
            lambda c: c.execute(
                "SELECT data FROM messages WHERE from_session=? OR to_session=? "
                "ORDER BY created_at DESC LIMIT ?",
                (session_id, session_id, limit),
            ).fetchall()
        )
        return [Message.from_dict(orjson.loads(r[0])) for r in reversed(rows)]

    async def flush(self) -> None:
        await self._call(lambda c: None)

    async def close(self) -> None:
        if self._closed or self._thread is None or not self._thread.is_alive():
            return
        self._closed = True
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._ops.put(("close", None, fut))
        await asyncio.wrap_future(fut)
        self._thread.join(timeout=5)
