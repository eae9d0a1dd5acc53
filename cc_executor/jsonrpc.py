"""JSON-RPC 2.0 framing with no I/O: bytes in, requests out; results in, bytes out.

The WebSocket server only moves frames; everything about what a frame means (parse errors,
invalid request objects, batches, notifications, id echoing, error shaping) lives here and
is tested without a socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from cc_executor.protocol import ErrorCode, ProtocolError

log = logging.getLogger(__name__)

# orjson is ~10x faster than stdlib json on the output hot path.
_OPTS = orjson.OPT_NON_STR_KEYS


def encode(obj: Any) -> bytes:
    """Serialise a message to UTF-8 JSON bytes."""
    return orjson.dumps(obj, option=_OPTS)


def decode(data: str | bytes) -> Any:
    return orjson.loads(data)


class _NoId:
    """Marks a notification: a request object without an `id` member."""

    def __repr__(self) -> str:
        return "NO_ID"


NO_ID: Any = _NoId()


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    params: dict[str, Any] | list[Any] | None
    id: Any = NO_ID

    @property
    def is_notification(self) -> bool:
        return self.id is NO_ID


def result_response(id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "result": result}


def error_response(id: Any, error: ProtocolError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None if id is NO_ID else id, "error": error.to_dict()}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def _valid_id(v: Any) -> bool:
    # Spec: String, Number or Null. bool is a subclass of int in Python; exclude it.
    return v is None or (isinstance(v, str | int | float) and not isinstance(v, bool))


def parse_request(obj: Any) -> Request | dict[str, Any]:
    """One request object -> Request, or the error response for an invalid one."""
    if not isinstance(obj, dict):
        return error_response(None, ProtocolError(ErrorCode.INVALID_REQUEST, "Invalid Request"))
    rid = obj.get("id", NO_ID)
    if rid is not NO_ID and not _valid_id(rid):
        return error_response(
            None, ProtocolError(ErrorCode.INVALID_REQUEST, "Invalid Request", "invalid id type")
        )
    if obj.get("jsonrpc") != "2.0":
        return error_response(
            rid,
            ProtocolError(ErrorCode.INVALID_REQUEST, "Invalid Request", 'jsonrpc must be "2.0"'),
        )
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        return error_response(
            rid,
            ProtocolError(ErrorCode.INVALID_REQUEST, "Invalid Request", "method must be a string"),
        )
    params = obj.get("params")
    # If present, params must be a structured value: an explicit null is invalid too.
    if "params" in obj and not isinstance(params, dict | list):
        return error_response(
            rid,
            ProtocolError(
                ErrorCode.INVALID_REQUEST, "Invalid Request", "params must be an object or array"
            ),
        )
    extra = set(obj) - {"jsonrpc", "method", "params", "id"}
    if extra:
        return error_response(
            rid,
            ProtocolError(
                ErrorCode.INVALID_REQUEST, "Invalid Request", f"unknown members: {sorted(extra)}"
            ),
        )
    return Request(method=method, params=params, id=rid)


def parse(data: str | bytes) -> tuple[list[Request | dict[str, Any]], bool]:
    """Parse one frame. Returns (items, is_batch); items are Requests or ready error responses."""
    try:
        obj = orjson.loads(data)
    except (orjson.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return [error_response(None, ProtocolError(ErrorCode.PARSE_ERROR, "Parse error"))], False
    if isinstance(obj, list):
        if not obj:
            return [
                error_response(None, ProtocolError(ErrorCode.INVALID_REQUEST, "Invalid Request"))
            ], False
        return [parse_request(o) for o in obj], True
    return [parse_request(obj)], False


def validate_params(model: type[BaseModel], params: dict[str, Any] | list[Any] | None) -> Any:
    """Validate params against a model; by-position params map to fields in order."""
    if params is None:
        params = {}
    elif isinstance(params, list):
        names = list(model.model_fields)
        if len(params) > len(names):
            raise ProtocolError(ErrorCode.INVALID_PARAMS, "Invalid params", "too many params")
        params = dict(zip(names, params, strict=False))
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        details = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        raise ProtocolError(ErrorCode.INVALID_PARAMS, "Invalid params", details) from None


def encode_frame(parts: list[bytes], is_batch: bool) -> bytes:
    """One reply frame from replies encoded one by one: a batch is their JSON array.

    Encoding each element on its own bounds what one encoder call builds, and lets each
    be weighed (and refused) before the frame exists.
    """
    return b"[" + b",".join(parts) + b"]" if is_batch else parts[0]


class ReplyBudget:
    """Bytes of replies one connection holds until they are sent, about `max_bytes`.

    Frames are numbered in arrival order. A reply that would pass `max_bytes`:
    - is refused if its own frame would then hold more than `max_bytes` (a reply, or a
      batch, too large for the budget): an error takes its place;
    - waits while earlier frames hold bytes: they are released as the client reads
      (back-pressure, as for any client that does not read);
    - is taken otherwise (only later frames hold the rest: they wait for this one). A
      frame never waits for a later one, so nothing deadlocks, and the bytes held stay
      under twice `max_bytes`.
    No I/O.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._held: dict[int, int] = {}  # frame number -> bytes it holds
        self._next = 0
        self._changed = asyncio.Condition()
        self._waiting = 0

    def new_frame(self) -> int:
        self._next += 1
        return self._next

    async def take(self, frame: int, n: int) -> bool:
        """Hold `n` more bytes for `frame`: True once held, False if refused."""
        if self._held.get(frame, 0) + n > self.max_bytes:
            return False
        if self.used + n > self.max_bytes:
            async with self._changed:
                self._waiting += 1
                try:
                    while self.used + n > self.max_bytes and self._earlier_hold(frame):
                        await self._changed.wait()
                finally:
                    self._waiting -= 1
        self.used += n
        self._held[frame] = self._held.get(frame, 0) + n
        return True

    def _earlier_hold(self, frame: int) -> bool:
        return any(f < frame and held for f, held in self._held.items())

    def give_back(self, frame: int, n: int) -> None:
        if n <= 0:
            return
        self.used -= n
        left = self._held.get(frame, 0) - n
        if left > 0:
            self._held[frame] = left
        else:
            self._held.pop(frame, None)
        if self._waiting:
            asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def refusal(self, id: Any, n: int) -> dict[str, Any]:
        """The error that replaces a reply of `n` bytes the budget cannot hold."""
        return error_response(
            id,
            ProtocolError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"this reply ({n} bytes) would pass the {self.max_bytes} bytes of replies a "
                "connection may have in flight: ask for less (a smaller `limit`), or fewer "
                "in one batch",
                {"reply_bytes": n, "max_reply_bytes_in_flight": self.max_bytes},
            ),
        )


Handler = Callable[[Any, Any], Awaitable[Any]]
"""A method handler: (context, validated params) -> result."""


@dataclass(frozen=True, slots=True)
class Route:
    params_model: type[BaseModel]
    handler: Handler


async def call(routes: dict[str, Route], req: Request, ctx: Any) -> dict[str, Any] | None:
    """Run one request through its route. Returns the response (None for notifications).

    A handler's ProtocolError becomes its error object; any other exception becomes
    -32603 Internal error (logged), so no request can take the connection down.
    """
    try:
        route = routes.get(req.method)
        if route is None:
            raise ProtocolError(
                ErrorCode.METHOD_NOT_FOUND, "Method not found", {"method": req.method[:200]}
            )
        params = validate_params(route.params_model, req.params)
        result = await route.handler(ctx, params)
    except ProtocolError as exc:
        return None if req.is_notification else error_response(req.id, exc)
    except Exception as exc:
        log.exception("internal error in %s", req.method)
        err = ProtocolError(ErrorCode.INTERNAL_ERROR, "Internal error", type(exc).__name__)
        return None if req.is_notification else error_response(req.id, err)
    if req.is_notification:
        return None
    return result_response(req.id, result)
