//! Test support: a proxy-wasm host on wasmtime.
