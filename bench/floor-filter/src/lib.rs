//! A proxy-wasm filter that makes only the host calls any identity-forwarding filter must make
//! on a request whose token it already knows, and nothing else.
//!
//! Per request: read `Authorization` (a call that returns data, so the host also calls back into
//! the VM's allocator), read the clock, remove `Authorization`, add three identity headers and
//! increment two counters: what the MCP auth filter does on a cache hit, without its parsing,
//! routing, cache lookup and policy. The benchmark shows it between the no-op row and the
//! filter's cache-hit rows, which splits the filter's cost into what the ABI costs and what the
//! filter's own code costs.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot { counters: [0; 2] }) });
}}

/// Root context: defines the two counters and creates a [`FloorHttp`] per request.
struct FloorRoot {
    counters: [u32; 2],
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let define = |name| hostcalls::define_metric(MetricType::Counter, name).unwrap_or(0);
        self.counters = [define("floor.first"), define("floor.second")];
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FloorHttp {
            counters: self.counters,
        }))
    }
}

/// HTTP context that makes the host calls of an identity-forwarding cache hit.
struct FloorHttp {
    counters: [u32; 2],
}

impl Context for FloorHttp {}

impl HttpContext for FloorHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        const MAP: MapType = MapType::HttpRequestHeaders;
        let token = hostcalls::get_map_value_bytes(MAP, "authorization");
        let _ = hostcalls::get_current_time();
        if let Ok(Some(_)) = token {
            let _ = hostcalls::set_map_value(MAP, "authorization", None);
        }
        for (name, value) in [
            ("x-floor-subject", "user"),
            ("x-floor-client-id", "client"),
            ("x-floor-scope", "scope"),
        ] {
            let _ = hostcalls::add_map_value(MAP, name, value);
        }
        for id in self.counters {
            let _ = hostcalls::increment_metric(id, 1);
        }
        Action::Continue
    }
}
