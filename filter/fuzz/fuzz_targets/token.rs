//! A bearer token: decoding, header checks, key selection, signature, claims.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcp_auth_filter::fuzzing::TokenTarget;
use mcp_auth_filter_fuzz::LimitedAllocator;

#[global_allocator]
static ALLOCATOR: LimitedAllocator = LimitedAllocator;

static TARGET: OnceLock<TokenTarget> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let target = TARGET.get_or_init(|| {
        TokenTarget::new(include_bytes!("../keys.json"))
            .expect("filter/fuzz/keys.json is a usable JWKS")
    });
    target.run(data);
});
