//! MCP authorization filter (proxy-wasm).
