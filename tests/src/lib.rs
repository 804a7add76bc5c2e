//! A proxy-wasm (ABI 0.2.1) host on wasmtime for testing filters through their real ABI.
//!
//! - [`Plugin`] compiles a module once and holds what all its VMs share, as one Envoy process
//!   does: the clock, shared data (with CAS), shared queues and metrics.
//! - [`Host`] is one VM (one Envoy worker): it runs `_initialize`, creates the root context,
//!   calls `proxy_on_vm_start` and `proxy_on_configure`, and drives HTTP streams
//!   ([`StreamId`]) through request/response headers and bodies.
//! - Observations: local responses, what the upstream would receive, pending
//!   `proxy_http_call`s (answered or failed by the test), ticks, logs, metrics.
//!
//! Host functions follow Envoy's observable behaviour where the ABI leaves room (first value
//! of a repeated header, lower-cased names, `BadArgument` for HTTP calls without
//! `:method`/`:path`/`:authority`, CAS on shared data). Imports it does not implement trap
//! with a message naming them when called.

mod abi;
mod headers;
mod host;
mod hostcalls;
mod memory;
mod state;
mod wasi;

pub use abi::{Action, LogLevel, MetricType, Status};
pub use headers::Headers;
pub use host::{Host, Plugin, StreamId};
pub use state::{Callback, Forwarded, HttpCall, LocalResponse, LogEntry};
