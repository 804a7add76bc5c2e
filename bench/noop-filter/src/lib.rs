//! A proxy-wasm filter that does nothing.
//!
//! Every HTTP context keeps the SDK's default callbacks, which all continue the stream at once.
//! The benchmark loads it exactly like the MCP auth filter (same runtime, same SDK version), so
//! its throughput and CPU cost are the ceiling for any proxy-wasm filter on that Envoy: what is
//! left is the price of the VM, the ABI calls Envoy makes per request and the SDK dispatch.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
}}

/// Root context: accepts any configuration and creates a [`NoopHttp`] per request.
struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NoopHttp))
    }
}

/// HTTP context whose callbacks are all the SDK defaults (`Action::Continue`).
struct NoopHttp;

impl Context for NoopHttp {}

impl HttpContext for NoopHttp {}
