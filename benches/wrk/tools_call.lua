-- wrk script for the demo's MCP server: the same `tools/call` (add 1 + 2) in every request, as a
-- client of MCP 2025-06-18 sends it on the stateless transport (no session). The bearer token, if
-- any, comes with wrk's -H.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-06-18"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}'
