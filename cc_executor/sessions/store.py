"""Where sessions, their turns and messages live. `SessionStore` is the small interface;
`SqliteSessionStore` keeps them in `<data_dir>/sessions.sqlite3`.

Same pattern as the task store: one connection on one writer thread, so the event loop
never waits on the disk. `save_*` only enqueue a snapshot (applied in order, consecutive
saves batched into one transaction); reads are answered by the same thread after every
earlier write, so a read always sees what was saved before it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from cc_executor.sessions.records import TURN_OPEN, Message, Session, Turn
from cc_executor.sqlite_thread import SqliteThread

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


def _dumps(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj, default=str)


class SqliteSessionStore:
    """Sessions, turns and messages in one SQLite file, written by a dedicated thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = SqliteThread(path, _SCHEMA, "cc-executor-sessions")

    @property
    def write_errors(self) -> int:
        return self._db.write_errors

    async def open(self) -> None:
        await self._db.open()

    def _put(self, sql: str, row: tuple[Any, ...]) -> None:
        self._db.put(sql, row)

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

    async def sessions(self) -> list[Session]:
        rows = await self._db.call(
            lambda c: c.execute("SELECT data FROM sessions ORDER BY created_at").fetchall()
        )
        return [Session.from_dict(orjson.loads(r[0])) for r in rows]

    async def turns(self, session_id: str, limit: int) -> list[Turn]:
        rows = await self._db.call(
            lambda c: c.execute(
                "SELECT data FROM turns WHERE session_id=? ORDER BY turn DESC LIMIT ?",
                (session_id, limit),
            ).fetchall()
        )
        return [Turn.from_dict(orjson.loads(r[0])) for r in reversed(rows)]

    async def open_turns(self) -> list[Turn]:
        marks = ",".join("?" * len(TURN_OPEN))
        rows = await self._db.call(
            lambda c: c.execute(
                f"SELECT data FROM turns WHERE status IN ({marks}) ORDER BY session_id, turn",
                tuple(TURN_OPEN),
            ).fetchall()
        )
        return [Turn.from_dict(orjson.loads(r[0])) for r in rows]

    async def messages(self, session_id: str, limit: int) -> list[Message]:
        rows = await self._db.call(
            lambda c: c.execute(
                "SELECT data FROM messages WHERE from_session=? OR to_session=? "
                "ORDER BY created_at DESC LIMIT ?",
                (session_id, session_id, limit),
            ).fetchall()
        )
        return [Message.from_dict(orjson.loads(r[0])) for r in reversed(rows)]

    async def flush(self) -> None:
        await self._db.flush()

    async def close(self) -> None:
        await self._db.close()
