"""`python -m mcp_bridge`: the cc_executor MCP server on stdio."""

from mcp_bridge.server import main

raise SystemExit(main())
