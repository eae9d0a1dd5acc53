"""Sessions: persistent, named Claude conversations run as Engine tasks (docs/sessions.md).

`SessionManager` queues and runs each session's turns, watch mode, messages between
sessions, kill, temp sessions and coordination; `SessionStore` persists them (SQLite).
"""

from cc_executor.sessions.manager import SessionManager
from cc_executor.sessions.records import Message, Session, Turn
from cc_executor.sessions.store import SessionStore, SqliteSessionStore

__all__ = [
    "Message",
    "Session",
    "SessionManager",
    "SessionStore",
    "SqliteSessionStore",
    "Turn",
]
