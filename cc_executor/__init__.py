"""cc-executor: run commands and fresh Claude Code instances in supervised process groups."""

__version__ = "0.1.0"

__all__ = ["__version__"]
