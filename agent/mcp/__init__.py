"""`interp mcp`: the workbench's tools, feature pages and an investigation prompt served over the Model
Context Protocol, so any MCP client (Claude Code, Claude Desktop, Cursor, an agent of one's own) can run
experiments on the local subject model, with every call and finding recorded in the catalog."""
