//! A JWKS document as a fetch answers it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_auth_filter_fuzz::LimitedAllocator;

#[global_allocator]
static ALLOCATOR: LimitedAllocator = LimitedAllocator;

fuzz_target!(|data: &[u8]| {
    mcp_auth_filter::fuzzing::jwks(data);
});
