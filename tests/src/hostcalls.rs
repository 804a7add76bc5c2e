//! The `env.proxy_*` functions of ABI 0.2.1, with Envoy's observable semantics.

use std::time::{Duration, UNIX_EPOCH};

use wasmtime::{Linker, Result, bail};

use crate::abi::{BufferType, LogLevel, MapType, MetricType, Status, StreamType};
use crate::headers::Headers;
use crate::memory::{Ctx, read, read_string, return_bytes, write_u32, write_u64};
use crate::state::{HttpCall, LocalResponse, Queue, SharedValue, VmState};

const OK: Result<i32> = Ok(Status::Ok as i32);

fn status(status: Status) -> Result<i32> {
    Ok(status.code())
}

/// Registers every host function this module implements under `env`.
pub(crate) fn add_to_linker(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap("env", "proxy_log", proxy_log)?;
    linker.func_wrap("env", "proxy_get_log_level", proxy_get_log_level)?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        proxy_get_current_time_nanoseconds,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        proxy_set_tick_period_milliseconds,
    )?;
    linker.func_wrap("env", "proxy_get_property", proxy_get_property)?;
    linker.func_wrap("env", "proxy_set_property", proxy_set_property)?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        proxy_get_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        proxy_get_header_map_pairs,
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        proxy_get_header_map_size,
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        proxy_add_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        proxy_replace_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        proxy_remove_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        proxy_set_header_map_pairs,
    )?;
    linker.func_wrap("env", "proxy_get_buffer_bytes", proxy_get_buffer_bytes)?;
    linker.func_wrap("env", "proxy_set_buffer_bytes", proxy_set_buffer_bytes)?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        proxy_send_local_response,
    )?;
    linker.func_wrap("env", "proxy_http_call", proxy_http_call)?;
    linker.func_wrap("env", "proxy_continue_stream", proxy_continue_stream)?;
    linker.func_wrap("env", "proxy_close_stream", proxy_close_stream)?;
    linker.func_wrap("env", "proxy_continue_request", |c: Ctx<'_>| {
        continue_direction(c, StreamType::Request)
    })?;
    linker.func_wrap("env", "proxy_continue_response", |c: Ctx<'_>| {
        continue_direction(c, StreamType::Response)
    })?;
    linker.func_wrap("env", "proxy_resume_http_request", |c: Ctx<'_>| {
        continue_direction(c, StreamType::Request)
    })?;
    linker.func_wrap("env", "proxy_resume_http_response", |c: Ctx<'_>| {
        continue_direction(c, StreamType::Response)
    })?;
    linker.func_wrap("env", "proxy_clear_route_cache", |_: Ctx<'_>| OK)?;
    linker.func_wrap("env", "proxy_get_shared_data", proxy_get_shared_data)?;
    linker.func_wrap("env", "proxy_set_shared_data", proxy_set_shared_data)?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        proxy_register_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        proxy_resolve_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        proxy_enqueue_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        proxy_dequeue_shared_queue,
    )?;
    linker.func_wrap("env", "proxy_define_metric", proxy_define_metric)?;
    linker.func_wrap("env", "proxy_increment_metric", proxy_increment_metric)?;
    linker.func_wrap("env", "proxy_record_metric", proxy_record_metric)?;
    linker.func_wrap("env", "proxy_get_metric", proxy_get_metric)?;
    linker.func_wrap("env", "proxy_done", proxy_done)?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        proxy_call_foreign_function,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        proxy_set_effective_context,
    )?;
    Ok(())
}

// ---- logging, time, ticks -------------------------------------------------------------

fn proxy_log(mut c: Ctx<'_>, level: i32, ptr: i32, len: i32) -> Result<i32> {
    let message = read_string(&mut c, ptr, len)?;
    let Some(level) = LogLevel::from_raw(level) else {
        return status(Status::BadArgument);
    };
    let state = c.data_mut();
    if std::env::var_os("PROXY_WASM_HOST_QUIET").is_none() {
        eprintln!(
            "[vm{} ctx{} {level:?}] {message}",
            state.vm_index, state.effective_context
        );
    }
    let context_id = state.effective_context;
    state.logs.push(crate::state::LogEntry {
        level,
        context_id,
        message,
    });
    OK
}

fn proxy_get_log_level(mut c: Ctx<'_>, ret: i32) -> Result<i32> {
    let level = c.data().log_level as u32;
    write_u32(&mut c, ret, level)?;
    OK
}

fn proxy_get_current_time_nanoseconds(mut c: Ctx<'_>, ret: i32) -> Result<i32> {
    let now = c.data().shared.now();
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    write_u64(&mut c, ret, u64::try_from(nanos).unwrap_or(u64::MAX))?;
    OK
}

fn proxy_set_tick_period_milliseconds(mut c: Ctx<'_>, period: i32) -> Result<i32> {
    let state = c.data_mut();
    let period = Duration::from_millis(u64::from(period as u32));
    if period.is_zero() {
        state.tick_period = None;
        state.next_tick = None;
    } else {
        state.tick_period = Some(period);
        state.next_tick = Some(state.shared.now() + period);
    }
    OK
}

// ---- properties -----------------------------------------------------------------------

fn property_path(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

/// Properties Envoy derives from the stream the effective context belongs to.
fn stream_property(state: &mut VmState, path: &[String]) -> Option<Vec<u8>> {
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    let stream = state.effective_stream()?;
    let header = match parts.as_slice() {
        ["request", "path"] => ":path",
        ["request", "url_path"] => {
            let path = stream.request.headers.get_bytes(":path")?;
            let end = path.iter().position(|b| *b == b'?').unwrap_or(path.len());
            return path.get(..end).map(<[u8]>::to_vec);
        }
        ["request", "method"] => ":method",
        ["request", "host"] => ":authority",
        ["request", "scheme"] => ":scheme",
        ["response", "code"] => {
            let status = stream
                .response
                .headers
                .get(":status")?
                .parse::<u64>()
                .ok()?;
            return Some(status.to_le_bytes().to_vec());
        }
        _ => return None,
    };
    stream.request.headers.get_bytes(header).map(<[u8]>::to_vec)
}

fn proxy_get_property(
    mut c: Ctx<'_>,
    path_ptr: i32,
    path_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32> {
    let path = property_path(&read(&mut c, path_ptr, path_len)?);
    let state = c.data_mut();
    let value = stream_property(state, &path).or_else(|| state.properties.get(&path).cloned());
    match value {
        Some(value) => {
            return_bytes(&mut c, &value, ret_ptr, ret_len)?;
            OK
        }
        None => status(Status::NotFound),
    }
}

fn proxy_set_property(
    mut c: Ctx<'_>,
    path_ptr: i32,
    path_len: i32,
    val_ptr: i32,
    val_len: i32,
) -> Result<i32> {
    let path = property_path(&read(&mut c, path_ptr, path_len)?);
    let value = read(&mut c, val_ptr, val_len)?;
    c.data_mut().properties.insert(path, value);
    OK
}

// ---- header maps ----------------------------------------------------------------------

fn header_map(state: &mut VmState, map: i32) -> Option<&mut Headers> {
    match MapType::from_raw(map)? {
        MapType::RequestHeaders => Some(&mut state.effective_stream()?.request.headers),
        MapType::RequestTrailers => Some(&mut state.effective_stream()?.request.trailers),
        MapType::ResponseHeaders => Some(&mut state.effective_stream()?.response.headers),
        MapType::ResponseTrailers => Some(&mut state.effective_stream()?.response.trailers),
        MapType::HttpCallResponseHeaders => Some(&mut state.call_reply.as_mut()?.headers),
        MapType::HttpCallResponseTrailers => Some(&mut state.call_reply.as_mut()?.trailers),
    }
}

fn proxy_get_header_map_value(
    mut c: Ctx<'_>,
    map: i32,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32> {
    let key = read_string(&mut c, key_ptr, key_len)?;
    let Some(headers) = header_map(c.data_mut(), map) else {
        return status(Status::BadArgument);
    };
    // Like Envoy, a repeated header yields its first value only.
    match headers.get_bytes(&key).map(<[u8]>::to_vec) {
        Some(value) => {
            return_bytes(&mut c, &value, ret_ptr, ret_len)?;
            OK
        }
        None => status(Status::NotFound),
    }
}

fn proxy_get_header_map_pairs(mut c: Ctx<'_>, map: i32, ret_ptr: i32, ret_len: i32) -> Result<i32> {
    let Some(headers) = header_map(c.data_mut(), map) else {
        return status(Status::BadArgument);
    };
    let bytes = headers.serialize();
    return_bytes(&mut c, &bytes, ret_ptr, ret_len)?;
    OK
}

fn proxy_get_header_map_size(mut c: Ctx<'_>, map: i32, ret: i32) -> Result<i32> {
    let Some(headers) = header_map(c.data_mut(), map) else {
        return status(Status::BadArgument);
    };
    let size = headers.serialize().len();
    write_u32(&mut c, ret, u32::try_from(size).unwrap_or(u32::MAX))?;
    OK
}

fn edit_header(
    mut c: Ctx<'_>,
    map: i32,
    key: (i32, i32),
    value: Option<(i32, i32)>,
    edit: fn(&mut Headers, &[u8], &[u8]),
) -> Result<i32> {
    let key = read(&mut c, key.0, key.1)?;
    let value = match value {
        Some((ptr, len)) => read(&mut c, ptr, len)?,
        None => Vec::new(),
    };
    match header_map(c.data_mut(), map) {
        Some(headers) => {
            edit(headers, &key, &value);
            OK
        }
        None => status(Status::BadArgument),
    }
}

fn proxy_add_header_map_value(
    c: Ctx<'_>,
    map: i32,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> Result<i32> {
    edit_header(c, map, (kp, kl), Some((vp, vl)), Headers::add)
}

fn proxy_replace_header_map_value(
    c: Ctx<'_>,
    map: i32,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> Result<i32> {
    edit_header(c, map, (kp, kl), Some((vp, vl)), Headers::replace)
}

fn proxy_remove_header_map_value(c: Ctx<'_>, map: i32, kp: i32, kl: i32) -> Result<i32> {
    edit_header(c, map, (kp, kl), None, |headers, key, _| {
        headers.remove(key)
    })
}

fn proxy_set_header_map_pairs(mut c: Ctx<'_>, map: i32, ptr: i32, len: i32) -> Result<i32> {
    let bytes = read(&mut c, ptr, len)?;
    let new = match Headers::deserialize(&bytes) {
        Ok(new) => new,
        Err(why) => bail!("proxy_set_header_map_pairs: malformed map from the filter: {why}"),
    };
    match header_map(c.data_mut(), map) {
        Some(headers) => {
            *headers = new;
            OK
        }
        None => status(Status::BadArgument),
    }
}

// ---- buffers --------------------------------------------------------------------------

fn buffer(state: &mut VmState, kind: i32) -> Option<&mut Vec<u8>> {
    match BufferType::from_raw(kind)? {
        BufferType::RequestBody => Some(&mut state.effective_stream()?.request.buffer),
        BufferType::ResponseBody => Some(&mut state.effective_stream()?.response.buffer),
        BufferType::HttpCallResponseBody => Some(&mut state.call_reply.as_mut()?.body),
        BufferType::VmConfiguration => Some(&mut state.vm_configuration),
        BufferType::PluginConfiguration => Some(&mut state.plugin_configuration),
        BufferType::CallData => None,
    }
}

fn proxy_get_buffer_bytes(
    mut c: Ctx<'_>,
    kind: i32,
    start: i32,
    max: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32> {
    let Some(data) = buffer(c.data_mut(), kind) else {
        return status(Status::NotFound);
    };
    let start = start as u32 as usize;
    let end = start.saturating_add(max as u32 as usize).min(data.len());
    let Some(slice) = data.get(start..end).map(<[u8]>::to_vec) else {
        return status(Status::BadArgument);
    };
    return_bytes(&mut c, &slice, ret_ptr, ret_len)?;
    OK
}

fn proxy_set_buffer_bytes(
    mut c: Ctx<'_>,
    kind: i32,
    start: i32,
    size: i32,
    ptr: i32,
    len: i32,
) -> Result<i32> {
    let bytes = read(&mut c, ptr, len)?;
    let Some(data) = buffer(c.data_mut(), kind) else {
        return status(Status::NotFound);
    };
    let start = (start as u32 as usize).min(data.len());
    let end = start.saturating_add(size as u32 as usize).min(data.len());
    data.splice(start..end, bytes);
    OK
}

// ---- stream control -------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn proxy_send_local_response(
    mut c: Ctx<'_>,
    status_code: i32,
    details_ptr: i32,
    details_len: i32,
    body_ptr: i32,
    body_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    grpc_status: i32,
) -> Result<i32> {
    let details = read_string(&mut c, details_ptr, details_len)?;
    let body = read(&mut c, body_ptr, body_len)?;
    let headers = match Headers::deserialize(&read(&mut c, headers_ptr, headers_len)?) {
        Ok(headers) => headers,
        Err(why) => bail!("proxy_send_local_response: malformed header map: {why}"),
    };
    let Some(stream) = c.data_mut().effective_stream() else {
        return status(Status::NotFound);
    };
    if stream.local_response.is_some() {
        bail!("proxy_send_local_response called twice on one stream");
    }
    // What the upstream already got (headers, maybe some body) is reset, as Envoy's router
    // does when a filter replies locally after the upstream request started.
    if let Some(upstream) = stream.request.forwarded.as_mut() {
        upstream.reset = true;
    }
    stream.local_response = Some(LocalResponse {
        status: status_code as u32,
        details,
        headers,
        body,
        grpc_status,
    });
    OK
}

/// Envoy's `continueStream` does not resume the stream inside the VM call: it queues
/// `continueDecoding()` / `continueEncoding()` to run once the call returns. The host records
/// the request here and [`crate::Host`] runs it after the callback (see `Host::settle`).
fn continue_direction(mut c: Ctx<'_>, kind: StreamType) -> Result<i32> {
    let state = c.data_mut();
    let context = state.effective_context;
    let Some(stream) = state.effective_stream() else {
        return status(Status::NotFound);
    };
    let direction = match kind {
        StreamType::Request => &mut stream.request,
        StreamType::Response => &mut stream.response,
    };
    direction.continue_calls += 1;
    state.deferred_continues.push((context, kind));
    OK
}

fn proxy_continue_stream(c: Ctx<'_>, kind: i32) -> Result<i32> {
    match StreamType::from_raw(kind) {
        Some(kind) => continue_direction(c, kind),
        None => status(Status::BadArgument),
    }
}

fn proxy_close_stream(mut c: Ctx<'_>, kind: i32) -> Result<i32> {
    let Some(kind) = StreamType::from_raw(kind) else {
        return status(Status::BadArgument);
    };
    let Some(stream) = c.data_mut().effective_stream() else {
        return status(Status::NotFound);
    };
    match kind {
        StreamType::Request => stream.request.closed = true,
        StreamType::Response => stream.response.closed = true,
    }
    OK
}

fn proxy_set_effective_context(mut c: Ctx<'_>, context: i32) -> Result<i32> {
    let state = c.data_mut();
    let context = context as u32;
    if context == state.root_context || state.streams.contains_key(&context) {
        state.effective_context = context;
        OK
    } else {
        status(Status::BadArgument)
    }
}

fn proxy_done(mut c: Ctx<'_>) -> Result<i32> {
    c.data_mut().done_calls += 1;
    OK
}

// ---- HTTP calls -----------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn proxy_http_call(
    mut c: Ctx<'_>,
    cluster_ptr: i32,
    cluster_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    body_ptr: i32,
    body_len: i32,
    trailers_ptr: i32,
    trailers_len: i32,
    timeout_ms: i32,
    ret_token: i32,
) -> Result<i32> {
    let cluster = read_string(&mut c, cluster_ptr, cluster_len)?;
    let headers = Headers::deserialize(&read(&mut c, headers_ptr, headers_len)?);
    let trailers = Headers::deserialize(&read(&mut c, trailers_ptr, trailers_len)?);
    let body = read(&mut c, body_ptr, body_len)?;
    let (Ok(headers), Ok(trailers)) = (headers, trailers) else {
        return status(Status::BadArgument);
    };
    let state = c.data_mut();
    if let Some(known) = &state.known_clusters
        && !known.contains(&cluster)
    {
        return status(Status::BadArgument);
    }
    // Envoy refuses a call without these pseudo-headers.
    if [":method", ":path", ":authority"]
        .iter()
        .any(|h| !headers.contains(h))
    {
        return status(Status::BadArgument);
    }
    let token = state.next_call_token;
    state.next_call_token += 1;
    let timeout = Duration::from_millis(u64::from(timeout_ms as u32));
    let call = HttpCall {
        token,
        cluster,
        headers,
        body,
        trailers,
        timeout,
        context_id: state.effective_context,
        deadline: state.shared.now() + timeout,
    };
    state.pending_calls.insert(token, call);
    write_u32(&mut c, ret_token, token)?;
    OK
}

// ---- shared data and queues -----------------------------------------------------------

fn proxy_get_shared_data(
    mut c: Ctx<'_>,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_len: i32,
    ret_cas: i32,
) -> Result<i32> {
    let key = read(&mut c, key_ptr, key_len)?;
    let found = c.data().shared.lock().data.get(&key).cloned();
    match found {
        Some(SharedValue { value, cas }) => {
            return_bytes(&mut c, &value, ret_ptr, ret_len)?;
            write_u32(&mut c, ret_cas, cas)?;
            OK
        }
        None => status(Status::NotFound),
    }
}

fn proxy_set_shared_data(
    mut c: Ctx<'_>,
    key_ptr: i32,
    key_len: i32,
    val_ptr: i32,
    val_len: i32,
    cas: i32,
) -> Result<i32> {
    let key = read(&mut c, key_ptr, key_len)?;
    let value = read(&mut c, val_ptr, val_len)?;
    let cas = cas as u32;
    let shared = c.data().shared.clone();
    let mut shared = shared.lock();
    if let Some(existing) = shared.data.get(&key)
        && cas != 0
        && cas != existing.cas
    {
        return status(Status::CasMismatch);
    }
    let new_cas = shared.next_cas;
    shared.next_cas = shared.next_cas.checked_add(1).unwrap_or(1);
    shared.data.insert(
        key,
        SharedValue {
            value,
            cas: new_cas,
        },
    );
    OK
}

fn proxy_register_shared_queue(
    mut c: Ctx<'_>,
    name_ptr: i32,
    name_len: i32,
    ret_id: i32,
) -> Result<i32> {
    let name = read(&mut c, name_ptr, name_len)?;
    let (vm, context) = (c.data().vm_index, c.data().effective_context);
    let id = {
        let shared = c.data().shared.clone();
        let mut shared = shared.lock();
        let index = match shared.queues.iter().position(|q| q.name == name) {
            Some(index) => index,
            None => {
                shared.queues.push(Queue {
                    name,
                    owner_vm: vm,
                    owner_context: context,
                    items: Default::default(),
                    ready_pending: false,
                });
                shared.queues.len() - 1
            }
        };
        if let Some(queue) = shared.queues.get_mut(index) {
            queue.owner_vm = vm;
            queue.owner_context = context;
        }
        index + 1
    };
    write_u32(&mut c, ret_id, id as u32)?;
    OK
}

fn proxy_resolve_shared_queue(
    mut c: Ctx<'_>,
    _vm_ptr: i32,
    _vm_len: i32,
    name_ptr: i32,
    name_len: i32,
    ret_id: i32,
) -> Result<i32> {
    let name = read(&mut c, name_ptr, name_len)?;
    let found = c
        .data()
        .shared
        .lock()
        .queues
        .iter()
        .position(|q| q.name == name);
    match found {
        Some(index) => {
            write_u32(&mut c, ret_id, index as u32 + 1)?;
            OK
        }
        None => status(Status::NotFound),
    }
}

fn proxy_enqueue_shared_queue(mut c: Ctx<'_>, id: i32, val_ptr: i32, val_len: i32) -> Result<i32> {
    let value = read(&mut c, val_ptr, val_len)?;
    let shared = c.data().shared.clone();
    let mut shared = shared.lock();
    match (id as u32 as usize)
        .checked_sub(1)
        .and_then(|i| shared.queues.get_mut(i))
    {
        Some(queue) => {
            queue.items.push_back(value);
            queue.ready_pending = true;
            OK
        }
        None => status(Status::NotFound),
    }
}

fn proxy_dequeue_shared_queue(mut c: Ctx<'_>, id: i32, ret_ptr: i32, ret_len: i32) -> Result<i32> {
    let popped = {
        let shared = c.data().shared.clone();
        let mut shared = shared.lock();
        match (id as u32 as usize)
            .checked_sub(1)
            .and_then(|i| shared.queues.get_mut(i))
        {
            Some(queue) => Some(queue.items.pop_front()),
            None => None,
        }
    };
    match popped {
        None => status(Status::NotFound),
        Some(None) => status(Status::Empty),
        Some(Some(value)) => {
            return_bytes(&mut c, &value, ret_ptr, ret_len)?;
            OK
        }
    }
}

// ---- metrics --------------------------------------------------------------------------

fn proxy_define_metric(
    mut c: Ctx<'_>,
    kind: i32,
    name_ptr: i32,
    name_len: i32,
    ret_id: i32,
) -> Result<i32> {
    let name = read_string(&mut c, name_ptr, name_len)?;
    let Some(kind) = MetricType::from_raw(kind) else {
        return status(Status::BadArgument);
    };
    let index = {
        let shared = c.data().shared.clone();
        let mut shared = shared.lock();
        match shared.metrics.iter().position(|m| m.name == name) {
            Some(index) if shared.metrics.get(index).is_some_and(|m| m.kind != kind) => {
                return status(Status::BadArgument);
            }
            Some(index) => index,
            None => {
                shared.metrics.push(crate::state::Metric {
                    name,
                    kind,
                    value: 0,
                    samples: Vec::new(),
                });
                shared.metrics.len() - 1
            }
        }
    };
    let ids = &mut c.data_mut().metric_ids;
    ids.push(index);
    let id = ids.len() as u32;
    write_u32(&mut c, ret_id, id)?;
    OK
}

/// Applies `change` to the shared metric behind the VM-local `id`.
fn with_metric(
    c: &mut Ctx<'_>,
    id: i32,
    change: impl FnOnce(&mut crate::state::Metric) -> Status,
) -> Status {
    let state = c.data();
    let Some(index) = (id as u32 as usize)
        .checked_sub(1)
        .and_then(|i| state.metric_ids.get(i))
    else {
        return Status::NotFound;
    };
    let mut shared = state.shared.lock();
    match shared.metrics.get_mut(*index) {
        Some(metric) => change(metric),
        None => Status::NotFound,
    }
}

fn proxy_increment_metric(mut c: Ctx<'_>, id: i32, offset: i64) -> Result<i32> {
    status(with_metric(&mut c, id, |metric| match metric.kind {
        MetricType::Counter if offset < 0 => Status::BadArgument,
        MetricType::Counter | MetricType::Gauge => {
            metric.value = metric.value.saturating_add(offset);
            Status::Ok
        }
        MetricType::Histogram => Status::BadArgument,
    }))
}

fn proxy_record_metric(mut c: Ctx<'_>, id: i32, value: i64) -> Result<i32> {
    status(with_metric(&mut c, id, |metric| {
        match metric.kind {
            MetricType::Counter => metric.value = metric.value.saturating_add(value),
            MetricType::Gauge => metric.value = value,
            MetricType::Histogram => metric.samples.push(value as u64),
        }
        Status::Ok
    }))
}

fn proxy_get_metric(mut c: Ctx<'_>, id: i32, ret: i32) -> Result<i32> {
    let mut value = 0;
    let result = with_metric(&mut c, id, |metric| match metric.kind {
        MetricType::Histogram => Status::BadArgument,
        _ => {
            value = metric.value;
            Status::Ok
        }
    });
    if result == Status::Ok {
        write_u64(&mut c, ret, value as u64)?;
    }
    status(result)
}

// ---- foreign functions ----------------------------------------------------------------

fn proxy_call_foreign_function(
    mut c: Ctx<'_>,
    name_ptr: i32,
    name_len: i32,
    args_ptr: i32,
    args_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32> {
    let name = read_string(&mut c, name_ptr, name_len)?;
    let args = read(&mut c, args_ptr, args_len)?;
    let Some(function) = c.data_mut().foreign_functions.get_mut(&name) else {
        return status(Status::NotFound);
    };
    match function(&args) {
        Some(result) => {
            return_bytes(&mut c, &result, ret_ptr, ret_len)?;
            OK
        }
        None => status(Status::InternalFailure),
    }
}
