"""cc-executor: run commands and fresh Claude Code instances in supervised process groups.

The Python API (`cc_execute`, `acc_execute`, `cc_execute_list`, `acc_execute_list`) is
imported on first use, so `import cc_executor` stays light.
"""

from typing import Any

__version__ = "0.1.0"

_API_NAMES = frozenset(
    {
        "ExecutionResult",
        "acc_execute",
        "acc_execute_list",
        "cc_execute",
        "cc_execute_list",
        "configure",
        "shutdown",
    }
)

__all__ = ["__version__", *sorted(_API_NAMES)]


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        from cc_executor import api

        return getattr(api, name)
    raise AttributeError(f"module 'cc_executor' has no attribute {name!r}")
