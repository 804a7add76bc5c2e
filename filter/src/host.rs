//! Thin host access: header maps read byte-safely, properties, shared data, metrics, logging,
//! time.
//!
//! The SDK's string getters panic on non-UTF-8 header values (client input), so header maps are
//! read here through the raw ABI call and decoded by the pure [`parse_header_map`].

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType};

use crate::cache::SharedStore;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
}

/// Sets a one-segment property of the current stream (Envoy: filter state `wasm.<name>`). Through
/// the raw ABI call: the SDK's wrapper panics (traps the VM) on any status but `Ok`, and a
/// property the host refuses is no reason to fail the request.
#[cfg(target_arch = "wasm32")]
pub fn set_property(name: &str, value: &str) {
    // SAFETY: both buffers are valid for their lengths during the call; the host copies them.
    let _ = unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
}

/// Native builds (unit tests, clippy) have no host.
#[cfg(not(target_arch = "wasm32"))]
pub fn set_property(_name: &str, _value: &str) {}

/// A header map in the host's serialization (decode with [`parse_header_map`]); empty when the
/// host has none. One host call for the whole map; the pairs borrow from this buffer.
#[cfg(target_arch = "wasm32")]
pub fn header_map_bytes(map: MapType) -> Vec<u8> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer to a buffer it allocated through our exported
    // `proxy_on_memory_allocate` (a `Vec<u8>` of capacity `size`), which we take back here.
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    if status != 0 || data.is_null() {
        return Vec::new();
    }
    // SAFETY: see above; ownership of the buffer passes to us.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// Native builds (unit tests, clippy) have no host.
#[cfg(not(target_arch = "wasm32"))]
pub fn header_map_bytes(_map: MapType) -> Vec<u8> {
    Vec::new()
}

/// A header pair borrowed from [`header_map_bytes`]: raw name and value bytes.
pub type HeaderPair<'a> = (&'a [u8], &'a [u8]);

/// Decodes the proxy-wasm header map serialization: `count:u32le`, `count × (klen:u32le,
/// vlen:u32le)`, then each key and value followed by a NUL. `None` if malformed.
pub fn parse_header_map(bytes: &[u8]) -> Option<Vec<HeaderPair<'_>>> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = u32_at(0)?;
    let mut sizes_at = 4usize;
    let mut data_at = count.checked_mul(8)?.checked_add(4)?;
    if data_at > bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let klen = u32_at(sizes_at)?;
        let vlen = u32_at(sizes_at + 4)?;
        sizes_at += 8;
        let key = bytes.get(data_at..data_at.checked_add(klen)?)?;
        data_at = data_at.checked_add(klen)?.checked_add(1)?;
        let value = bytes.get(data_at..data_at.checked_add(vlen)?)?;
        data_at = data_at.checked_add(vlen)?.checked_add(1)?;
        out.push((key, value));
    }
    Some(out)
}

/// Host time in milliseconds since the Unix epoch (`proxy_get_current_time_nanoseconds`).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Logs through the host, ignoring failures.
pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Shared data of the VM as the token cache's store.
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        hostcalls::get_shared_data(key).ok().and_then(|(v, _)| v)
    }

    fn set(&self, key: &str, value: &[u8]) {
        let _ = hostcalls::set_shared_data(key, Some(value), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(k.as_bytes());
            out.push(0);
            out.extend(v.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn header_maps_decode_and_truncation_is_rejected() {
        let bytes = serialize(&[
            (":path", "/mcp"),
            ("authorization", "Bearer x"),
            ("empty", ""),
        ]);
        let map = parse_header_map(&bytes).expect("valid");
        assert_eq!(map.len(), 3);
        assert_eq!(map[1], (&b"authorization"[..], &b"Bearer x"[..]));
        assert_eq!(map[2].1, b"");
        for cut in 0..bytes.len() - 1 {
            assert!(parse_header_map(&bytes[..cut]).is_none(), "cut {cut}");
        }
        assert!(parse_header_map(&[0xff, 0xff, 0xff, 0xff]).is_none());
        assert_eq!(parse_header_map(&[0, 0, 0, 0]), Some(vec![]));
        assert!(
            header_map_bytes(MapType::HttpRequestHeaders).is_empty(),
            "no host natively"
        );
    }
}
