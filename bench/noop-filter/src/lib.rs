//! No-op proxy-wasm filter.
