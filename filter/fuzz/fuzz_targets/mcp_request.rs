//! The MCP method and name of a request: `Mcp-Method`, `Mcp-Name` and the JSON-RPC body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_auth_filter_fuzz::LimitedAllocator;

#[global_allocator]
static ALLOCATOR: LimitedAllocator = LimitedAllocator;

fuzz_target!(|data: &[u8]| {
    let _ = mcp_auth_filter::fuzzing::mcp_request(data);
});
