"""MCP stdio bridge for cc-executor."""
