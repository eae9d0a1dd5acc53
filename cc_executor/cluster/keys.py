"""Every Redis key the cluster uses, named in one place, and the URL shown without secrets.

All keys start with `cce:` so one Redis database can be inspected (or flushed) as a whole.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from cc_executor.protocol import Stream

PREFIX = "cce:"

EPOCH = PREFIX + "epoch"  # set once per Redis dataset: a new value means the data was lost
TOKEN = PREFIX + "token"  # the cluster's shared service token
NODES = PREFIX + "nodes"  # hash: node id -> its last heartbeat (JSON), kept after it dies
TASKS = PREFIX + "tasks"  # sorted set: task id by created_at (the cluster's task list)
UNFINISHED = PREFIX + "unfinished"  # set: ids of every task not yet final
QUEUE = PREFIX + "queue"  # list of task ids: the cluster-wide FIFO (LPUSH in, RPOP out)
QUEUED_COUNT = PREFIX + "queued"  # how many tasks wait in QUEUE (max_queued_tasks)
BUS = PREFIX + "bus"  # pub/sub channel: every task's control events
QUEUE_WAKE = PREFIX + "queue-wake"  # pub/sub channel: "work was queued"
SESSIONS = PREFIX + "sessions"  # hash: session id -> {node, name} (cluster/sessions.py)


def heartbeat(node: str) -> str:
    """Exists while the node is alive: refreshed with a TTL of `node_ttl`."""
    return f"{PREFIX}hb:{node}"


def task(task_id: str) -> str:
    """Hash of one task: s=status, n=node (empty while queued), d=record JSON, q=request."""
    return f"{PREFIX}task:{task_id}"


def node_tasks(node: str) -> str:
    """Set of the unfinished tasks a node runs (or claimed to run)."""
    return f"{PREFIX}node-tasks:{node}"


def node_waiting(node: str) -> str:
    """Set of tasks queued on one node only (pinned to it, or with no request to rebuild)."""
    return f"{PREFIX}node-waiting:{node}"


def taken(node: str) -> str:
    """List of queue entries a node has taken but not started yet."""
    return f"{PREFIX}taken:{node}"


def reaper_lock(node: str) -> str:
    """Held by the one survivor that declares a dead node's work lost or re-queues it."""
    return f"{PREFIX}reap:{node}"


def session_name_lock(name: str) -> str:
    """Held while a session of this name is created: names of active sessions are unique
    cluster-wide, so two nodes must not check and create the same name at once."""
    return f"{PREFIX}session-name:{name}"


def output(task_id: str, stream: Stream) -> str:
    """Stream of one task stream's output: entry id `<offset>-1`, field d=bytes."""
    return f"{PREFIX}out:{task_id}:{stream.value}"


def rpc_inbox(node: str) -> str:
    """List of JSON-RPC calls forwarded to a node."""
    return f"{PREFIX}rpc:{node}"


def rpc_reply(node: str, call_id: str) -> str:
    return f"{PREFIX}rpc-reply:{node}:{call_id}"


def redact(url: str) -> str:
    """The Redis URL without user or password: safe for logs, /health and errors."""
    try:
        u = urlsplit(url)
        host = u.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{u.port}" if u.port else ""
        return f"{u.scheme}://{host}{port}{u.path}"
    except ValueError:
        return "redis://(unparsable URL)"
