"""One handler per `session.*` method. Handlers build replies; the SessionManager acts.

`SESSION_ROUTES` maps each method to its params model and handler; `cc_executor.handlers`
merges it into `ROUTES`. The manager is the connection's (`Conn.sessions`): whoever serves
the connection (the service, an in-process transport) hands in the one its runtime built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cc_executor import jsonrpc
from cc_executor.protocol import (
    PARAMS,
    ErrorCode,
    Method,
    ProtocolError,
    SessionCoordinateParams,
    SessionCreateParams,
    SessionListParams,
    SessionLogsParams,
    SessionRef,
    SessionSendParams,
    SessionSpawnTempParams,
)

if TYPE_CHECKING:
    from cc_executor.handlers import Conn
    from cc_executor.sessions.manager import SessionManager


def _manager(conn: Conn) -> SessionManager:
    if conn.sessions is None:
        raise ProtocolError(ErrorCode.INVALID_STATE, "sessions are not enabled on this connection")
    return conn.sessions


async def session_create(conn: Conn, p: SessionCreateParams) -> dict[str, Any]:
    return await _manager(conn).create(p)


async def session_send(conn: Conn, p: SessionSendParams) -> dict[str, Any]:
    return await _manager(conn).send(
        p.session_id, p.message, wait=p.wait, from_session=p.from_session, timeout=p.timeout
    )


async def session_status(conn: Conn, p: SessionRef) -> dict[str, Any]:
    manager = _manager(conn)
    return manager.describe(manager.resolve(p.session_id))


async def session_list(conn: Conn, p: SessionListParams) -> dict[str, Any]:
    return _manager(conn).list_sessions(p.include_ended)


async def session_logs(conn: Conn, p: SessionLogsParams) -> dict[str, Any]:
    return await _manager(conn).logs(p.session_id, p.lines)


async def session_kill(conn: Conn, p: SessionRef) -> dict[str, Any]:
    return await _manager(conn).kill(p.session_id)


async def session_spawn_temp(conn: Conn, p: SessionSpawnTempParams) -> dict[str, Any]:
    return await _manager(conn).spawn_temp(p)


async def session_coordinate(conn: Conn, p: SessionCoordinateParams) -> dict[str, Any]:
    return await _manager(conn).coordinate(p)


_HANDLERS: dict[str, jsonrpc.Handler] = {
    Method.SESSION_CREATE: session_create,
    Method.SESSION_SEND: session_send,
    Method.SESSION_STATUS: session_status,
    Method.SESSION_LIST: session_list,
    Method.SESSION_LOGS: session_logs,
    Method.SESSION_KILL: session_kill,
    Method.SESSION_SPAWN_TEMP: session_spawn_temp,
    Method.SESSION_COORDINATE: session_coordinate,
}

SESSION_ROUTES: dict[str, jsonrpc.Route] = {
    str(name): jsonrpc.Route(PARAMS[name], handler) for name, handler in _HANDLERS.items()
}
