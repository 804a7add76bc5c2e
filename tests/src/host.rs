//! The public model: a [`Plugin`] (one compiled module plus the state all its VMs share) and
//! [`Host`]s (one VM each, like one Envoy worker thread) that drive HTTP streams through it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use wasmtime::{Engine, ExternType, Instance, Linker, Module, Store, WasmParams, WasmResults};

use crate::abi::{Action, LogLevel, StreamType};
use crate::headers::Headers;
use crate::state::{
    CallReply, Callback, Forwarded, HttpCall, LocalResponse, LogEntry, Shared, StreamState, VmState,
};
use crate::{hostcalls, wasi};

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::default)
}

/// Compiles each file once per test process; every test then instantiates the cached module.
fn compiled(path: &Path) -> Result<Module> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Module>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(module) = cache.get(path) {
        return Ok(module.clone());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let module = Module::new(engine(), bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("compiling {}", path.display()))?;
    cache.insert(path.to_path_buf(), module.clone());
    Ok(module)
}

/// One proxy-wasm plugin: the compiled module and what all its VMs share (clock, shared
/// data with CAS, shared queues, metrics), as within one Envoy process.
#[derive(Clone)]
pub struct Plugin {
    module: Module,
    shared: Shared,
    vm_count: Arc<AtomicUsize>,
    vm_configuration: Vec<u8>,
}

impl Plugin {
    /// Loads a `.wasm` file (compiled once per process and cached).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Plugin> {
        Ok(Plugin::from_module(compiled(path.as_ref())?))
    }

    /// Loads a module from binary or WebAssembly text.
    pub fn from_bytes(bytes: impl AsRef<[u8]>) -> Result<Plugin> {
        let module = Module::new(engine(), bytes.as_ref()).map_err(anyhow::Error::from)?;
        Ok(Plugin::from_module(module))
    }

    fn from_module(module: Module) -> Plugin {
        // Whole seconds, so JWT `exp`/`iat` arithmetic in tests is exact.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Plugin {
            module,
            shared: Shared::new(UNIX_EPOCH + Duration::from_secs(now.as_secs())),
            vm_count: Arc::new(AtomicUsize::new(0)),
            vm_configuration: Vec::new(),
        }
    }

    /// Sets what `proxy_on_vm_start` sees as VM configuration for VMs created afterwards.
    pub fn set_vm_configuration(&mut self, bytes: impl Into<Vec<u8>>) {
        self.vm_configuration = bytes.into();
    }

    /// Starts a new VM of this plugin (see [`Host::start`]).
    pub fn new_host(&self) -> Result<Host> {
        Host::start(self)
    }

    /// The host clock every VM reads (`proxy_get_current_time_nanoseconds`, WASI clocks).
    pub fn now(&self) -> SystemTime {
        self.shared.now()
    }

    /// Seconds since the Unix epoch on the host clock.
    pub fn unix_now(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    }

    /// Moves the clock forward without running any VM's timers.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.advance(by);
    }

    /// Counter or gauge value by the name the filter defined, summed over all VMs.
    pub fn metric(&self, name: &str) -> Option<i64> {
        let shared = self.shared.lock();
        shared
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Every metric the filter defined, with its value (histograms: sample count).
    pub fn metrics(&self) -> Vec<(String, i64)> {
        let shared = self.shared.lock();
        let value = |m: &crate::state::Metric| match m.kind {
            crate::MetricType::Histogram => m.samples.len() as i64,
            _ => m.value,
        };
        shared
            .metrics
            .iter()
            .map(|m| (m.name.clone(), value(m)))
            .collect()
    }

    /// Samples recorded into a histogram.
    pub fn histogram(&self, name: &str) -> Vec<u64> {
        let shared = self.shared.lock();
        shared
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.samples.clone())
            .unwrap_or_default()
    }

    /// A shared-data value, as `proxy_get_shared_data` would return it.
    pub fn shared_data(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.shared.lock().data.get(key).map(|v| v.value.clone())
    }

    /// Keys currently in shared data.
    pub fn shared_data_keys(&self) -> Vec<Vec<u8>> {
        self.shared.lock().data.keys().cloned().collect()
    }
}

/// Handle on one HTTP stream (one HTTP context) of a [`Host`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamId(u32);

impl StreamId {
    pub fn context_id(self) -> u32 {
        self.0
    }
}

/// One VM instance of a plugin, like one Envoy worker: a root context plus HTTP streams.
pub struct Host {
    plugin: Plugin,
    store: Store<VmState>,
    instance: Instance,
    next_context: u32,
    failure: Option<String>,
}

const ROOT_CONTEXT: u32 = 1;

/// What a VM's event loop does next while time passes.
enum TimerEvent {
    Tick(SystemTime),
    CallTimeout(SystemTime, u32),
}

impl Host {
    /// Instantiates the module, runs `_initialize` (or `_start`), creates the root context and
    /// calls `proxy_on_vm_start`. Imports this host does not implement are defined as functions
    /// that trap naming the import, so they fail loudly when (and only when) called.
    pub fn start(plugin: &Plugin) -> Result<Host> {
        let vm_index = plugin.vm_count.fetch_add(1, Ordering::SeqCst);
        let mut state = VmState::new(plugin.shared.clone(), vm_index);
        state.root_context = ROOT_CONTEXT;
        state.effective_context = ROOT_CONTEXT;
        state.vm_configuration = plugin.vm_configuration.clone();
        let mut store = Store::new(engine(), state);
        let instance = link(&mut store, &plugin.module)?;
        let mut host = Host {
            plugin: plugin.clone(),
            store,
            instance,
            next_context: ROOT_CONTEXT + 1,
            failure: None,
        };
        host.check_abi_version()?;
        if host.exports("_initialize") {
            host.call::<(), ()>("_initialize", ROOT_CONTEXT, ())?;
        } else if host.exports("_start") {
            host.call::<(), ()>("_start", ROOT_CONTEXT, ())?;
        }
        let root = ROOT_CONTEXT as i32;
        host.call::<(i32, i32), ()>("proxy_on_context_create", ROOT_CONTEXT, (root, 0))?;
        let size = host.store.data().vm_configuration.len() as i32;
        let started =
            host.call::<(i32, i32), i32>("proxy_on_vm_start", ROOT_CONTEXT, (root, size))?;
        if started == 0 {
            bail!("proxy_on_vm_start returned false");
        }
        Ok(host)
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    pub fn root_context_id(&self) -> u32 {
        ROOT_CONTEXT
    }

    fn exports(&mut self, name: &str) -> bool {
        self.instance.get_func(&mut self.store, name).is_some()
    }

    fn check_abi_version(&mut self) -> Result<()> {
        let versions = ["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"];
        if versions.iter().any(|v| self.exports(v)) {
            Ok(())
        } else {
            bail!("the module exports none of {versions:?}; not a proxy-wasm 0.2 module")
        }
    }

    /// Calls an export with `context` as the effective context. A trap marks the VM failed
    /// (like Envoy does) and is returned with the filter's stderr (its panic message).
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
        context: u32,
        params: P,
    ) -> Result<R> {
        if let Some(failure) = &self.failure {
            bail!("the VM failed earlier: {failure}");
        }
        let func = self
            .instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("the module does not export `{name}` with the ABI signature")
            })?;
        self.store.data_mut().effective_context = context;
        let stderr_before = self.store.data().stderr.len();
        let result = func.call(&mut self.store, params);
        let state = self.store.data_mut();
        state.effective_context = ROOT_CONTEXT;
        result.map_err(|error| {
            let stderr =
                String::from_utf8_lossy(state.stderr.get(stderr_before..).unwrap_or_default());
            let message = format!("wasm trapped in {name}: {error:?}\nfilter stderr: {stderr}");
            self.failure = Some(message.clone());
            anyhow!(message)
        })
    }

    // ---- configuration ------------------------------------------------------------------

    /// Calls `proxy_on_configure` with `config` as plugin configuration; returns whether
    /// the plugin accepted it.
    pub fn configure(&mut self, config: impl AsRef<[u8]>) -> Result<bool> {
        let config = config.as_ref().to_vec();
        let size = config.len() as i32;
        self.store.data_mut().plugin_configuration = config;
        let root = ROOT_CONTEXT as i32;
        let accepted =
            self.call::<(i32, i32), i32>("proxy_on_configure", ROOT_CONTEXT, (root, size))?;
        self.settle()?;
        Ok(accepted != 0)
    }

    /// Restricts `proxy_http_call` to these cluster names; others get `BadArgument`, as
    /// Envoy answers for an unknown cluster. By default every cluster name is accepted.
    pub fn set_known_clusters(&mut self, clusters: &[&str]) {
        self.store.data_mut().known_clusters =
            Some(clusters.iter().map(|c| c.to_string()).collect());
    }

    /// Sets a property `proxy_get_property` returns for `path` (e.g. `["plugin_name"]`).
    pub fn set_property(&mut self, path: &[&str], value: impl Into<Vec<u8>>) {
        let path = path.iter().map(|p| p.to_string()).collect();
        self.store.data_mut().properties.insert(path, value.into());
    }

    /// Level `proxy_get_log_level` reports (default `Trace`: everything is captured).
    pub fn set_log_level(&mut self, level: LogLevel) {
        self.store.data_mut().log_level = level;
    }

    /// Makes `proxy_call_foreign_function(name, ..)` call `function`; `None` from it is
    /// reported to the filter as `InternalFailure`.
    pub fn register_foreign_function(
        &mut self,
        name: &str,
        function: impl FnMut(&[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) {
        self.store
            .data_mut()
            .foreign_functions
            .insert(name.to_string(), Box::new(function));
    }

    // ---- HTTP streams -------------------------------------------------------------------

    /// Creates an HTTP context (`proxy_on_context_create(id, root)`).
    pub fn new_http_stream(&mut self) -> Result<StreamId> {
        let id = self.next_context;
        self.next_context += 1;
        self.store
            .data_mut()
            .streams
            .insert(id, StreamState::default());
        self.call::<(i32, i32), ()>(
            "proxy_on_context_create",
            id,
            (id as i32, ROOT_CONTEXT as i32),
        )?;
        Ok(StreamId(id))
    }

    fn stream_state(&self, stream: StreamId) -> Result<&StreamState> {
        self.store
            .data()
            .streams
            .get(&stream.0)
            .ok_or_else(|| anyhow!("no HTTP stream with context id {}", stream.0))
    }

    fn stream_state_mut(&mut self, stream: StreamId) -> Result<&mut StreamState> {
        self.store
            .data_mut()
            .streams
            .get_mut(&stream.0)
            .ok_or_else(|| anyhow!("no HTTP stream with context id {}", stream.0))
    }

    /// Models Envoy's Wasm `PluginConfig.allow_on_headers_stop_iteration` (Envoy 1.35+) when
    /// `true`: a `Pause` from a header callback then holds only the headers, and the body and
    /// trailers still reach the filter's callbacks; the headers go on with the body when a
    /// later callback returns `Continue` or the filter continues the stream. `false` (the
    /// default, and every host without the field, such as Istio's `WasmPlugin`): that `Pause`
    /// holds everything, see [`Host::send_request_headers`].
    pub fn set_headers_stop_iteration(&mut self, enabled: bool) {
        self.store.data_mut().headers_stop_iteration = enabled;
    }

    /// Delivers request headers (`proxy_on_request_headers`). On `Continue` the headers as
    /// the filter left them go to the upstream. On `Pause` they are held and, as in Envoy
    /// (which turns that `Pause` into `StopAllIterationAndWatermark`), so is everything after
    /// them: body chunks and trailers wait in the host, unseen by the filter, until the filter
    /// continues the stream. With [`Host::set_headers_stop_iteration`] only the headers are
    /// held: body chunks and trailers are passed to the filter.
    pub fn send_request_headers(
        &mut self,
        stream: StreamId,
        headers: impl Into<Headers>,
        end_of_stream: bool,
    ) -> Result<Action> {
        let headers = headers.into();
        let state = self.stream_state_mut(stream)?;
        if state.request.headers_sent {
            bail!("request headers were already sent on this stream");
        }
        state.request.headers = headers;
        state.request.headers_sent = true;
        state.request.end_of_stream = end_of_stream;
        let action = self.call_headers(stream, true)?;
        self.settle()?;
        Ok(action)
    }

    /// Delivers one request body chunk. `Some(action)`: `proxy_on_request_body` ran and
    /// answered `action` (chunks it paused on stay buffered and are presented again with the
    /// next chunk appended). `None`: the filter was not called, because its header callback
    /// paused the stream (the chunk is held and passed on when the stream is continued) or
    /// it already answered the request locally (the chunk is dropped).
    pub fn send_request_body(
        &mut self,
        stream: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Option<Action>> {
        self.send_body(stream, chunk, end_of_stream, true)
    }

    /// Delivers request trailers (`proxy_on_request_trailers`); `None` when they are held or
    /// dropped instead, as for [`Host::send_request_body`].
    pub fn send_request_trailers(
        &mut self,
        stream: StreamId,
        trailers: impl Into<Headers>,
    ) -> Result<Option<Action>> {
        let trailers = trailers.into();
        let state = self.stream_state_mut(stream)?;
        state.request.end_of_stream = true;
        if state.local_response.is_some() {
            return Ok(None);
        }
        if state.request.stopped_all {
            state.request.held_trailers = Some(trailers);
            return Ok(None);
        }
        state.request.trailers = trailers;
        let action = self.call_trailers(stream)?;
        self.settle()?;
        Ok(Some(action))
    }

    /// Delivers upstream response headers (`proxy_on_response_headers`); `Pause` holds the
    /// response body like it does on the request side.
    pub fn send_response_headers(
        &mut self,
        stream: StreamId,
        headers: impl Into<Headers>,
        end_of_stream: bool,
    ) -> Result<Action> {
        let headers = headers.into();
        let state = self.stream_state_mut(stream)?;
        state.response.headers = headers;
        state.response.headers_sent = true;
        state.response.end_of_stream = end_of_stream;
        let action = self.call_headers(stream, false)?;
        self.settle()?;
        Ok(action)
    }

    /// Delivers one upstream response body chunk (`proxy_on_response_body`); `None` as for
    /// [`Host::send_request_body`].
    pub fn send_response_body(
        &mut self,
        stream: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Option<Action>> {
        self.send_body(stream, chunk, end_of_stream, false)
    }

    fn send_body(
        &mut self,
        stream: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
        request: bool,
    ) -> Result<Option<Action>> {
        let state = self.stream_state_mut(stream)?;
        let replied = state.local_response.is_some();
        let direction = if request {
            &mut state.request
        } else {
            &mut state.response
        };
        direction.end_of_stream = end_of_stream;
        if replied {
            return Ok(None);
        }
        if direction.stopped_all {
            direction
                .held_body
                .get_or_insert_with(Vec::new)
                .extend_from_slice(chunk);
            return Ok(None);
        }
        direction.buffer.extend_from_slice(chunk);
        let action = self.call_body(stream, request, end_of_stream)?;
        self.settle()?;
        Ok(Some(action))
    }

    /// Runs the header callback of one direction and applies its answer.
    fn call_headers(&mut self, stream: StreamId, request: bool) -> Result<Action> {
        let state = self.stream_state(stream)?;
        let direction = if request {
            &state.request
        } else {
            &state.response
        };
        let params = (
            stream.0 as i32,
            direction.headers.len() as i32,
            i32::from(direction.end_of_stream),
        );
        let (name, callback) = if request {
            ("proxy_on_request_headers", Callback::RequestHeaders)
        } else {
            ("proxy_on_response_headers", Callback::ResponseHeaders)
        };
        let raw = self.call::<(i32, i32, i32), i32>(name, stream.0, params)?;
        let action = Action::from_raw(raw).map_err(|e| anyhow!(e))?;
        let stop_iteration = self.store.data().headers_stop_iteration;
        let state = self.stream_state_mut(stream)?;
        state.callbacks.push((callback, action));
        let replied = state.local_response.is_some();
        let direction = if request {
            &mut state.request
        } else {
            &mut state.response
        };
        match action {
            _ if replied => {}
            Action::Continue => direction.release(),
            Action::Pause if stop_iteration => direction.stopped_headers = true,
            Action::Pause => direction.stopped_all = true,
        }
        Ok(action)
    }

    /// Runs the body callback on the body the filter currently sees and applies its answer:
    /// `Continue` forwards it, `Pause` keeps it buffered.
    fn call_body(
        &mut self,
        stream: StreamId,
        request: bool,
        end_of_stream: bool,
    ) -> Result<Action> {
        let state = self.stream_state(stream)?;
        let size = if request {
            state.request.buffer.len()
        } else {
            state.response.buffer.len()
        };
        let (name, callback) = if request {
            (
                "proxy_on_request_body",
                Callback::RequestBody {
                    size,
                    end_of_stream,
                },
            )
        } else {
            (
                "proxy_on_response_body",
                Callback::ResponseBody {
                    size,
                    end_of_stream,
                },
            )
        };
        let params = (stream.0 as i32, size as i32, i32::from(end_of_stream));
        let raw = self.call::<(i32, i32, i32), i32>(name, stream.0, params)?;
        let action = Action::from_raw(raw).map_err(|e| anyhow!(e))?;
        let state = self.stream_state_mut(stream)?;
        state.callbacks.push((callback, action));
        let replied = state.local_response.is_some();
        let direction = if request {
            &mut state.request
        } else {
            &mut state.response
        };
        if action == Action::Continue && !replied {
            direction.release();
        }
        Ok(action)
    }

    /// Runs `proxy_on_request_trailers` on the trailers in place. `Continue` forwards the
    /// buffered body and the trailers (Envoy passes data a filter buffered on together with
    /// the trailers it continues); `Pause` holds both until the stream is continued.
    fn call_trailers(&mut self, stream: StreamId) -> Result<Action> {
        let count = self.stream_state(stream)?.request.trailers.len() as i32;
        let raw = self.call::<(i32, i32), i32>(
            "proxy_on_request_trailers",
            stream.0,
            (stream.0 as i32, count),
        )?;
        let action = Action::from_raw(raw).map_err(|e| anyhow!(e))?;
        let state = self.stream_state_mut(stream)?;
        state.callbacks.push((Callback::RequestTrailers, action));
        if state.local_response.is_none() {
            state.request.trailers_pending = true;
            if action == Action::Continue {
                state.request.release();
            }
        }
        Ok(action)
    }

    /// Runs the stream continuations the filter asked for during the callbacks that just
    /// returned, in order, and any they cause in turn.
    fn settle(&mut self) -> Result<()> {
        loop {
            let pending = std::mem::take(&mut self.store.data_mut().deferred_continues);
            if pending.is_empty() {
                return Ok(());
            }
            for (context, kind) in pending {
                self.resume(StreamId(context), kind == StreamType::Request)?;
            }
        }
    }

    /// Envoy's `continueDecoding()` / `continueEncoding()`: after a paused header phase the
    /// headers go on and the held body is passed to the filter's body callback in one piece
    /// (end of stream set if it came and no trailers follow), then held trailers to its
    /// trailers callback. After a paused body or trailers phase, what the filter buffered
    /// goes on. Nothing happens once the filter answered the request locally.
    fn resume(&mut self, stream: StreamId, request: bool) -> Result<()> {
        let Ok(state) = self.stream_state_mut(stream) else {
            return Ok(());
        };
        if state.local_response.is_some() || state.done {
            return Ok(());
        }
        let direction = if request {
            &mut state.request
        } else {
            &mut state.response
        };
        if !direction.headers_sent {
            return Ok(());
        }
        if !direction.stopped_all {
            direction.release();
            return Ok(());
        }
        direction.stopped_all = false;
        let held_body = direction.held_body.take();
        let trailers_follow = direction.held_trailers.is_some();
        if held_body.is_none() && !trailers_follow {
            direction.release();
            return Ok(());
        }
        direction.forward_headers();
        if let Some(body) = held_body {
            direction.buffer.extend_from_slice(&body);
            let end_of_stream = direction.end_of_stream && !trailers_follow;
            self.call_body(stream, request, end_of_stream)?;
        }
        let state = self.stream_state_mut(stream)?;
        if state.local_response.is_some() || !request {
            return Ok(());
        }
        if let Some(trailers) = state.request.held_trailers.take() {
            state.request.trailers = trailers;
            self.call_trailers(stream)?;
        }
        Ok(())
    }

    /// Ends the stream: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`. Like Envoy,
    /// which cancels a context's outstanding HTTP calls when it is destroyed, calls this
    /// stream's context dispatched are dropped without a callback.
    pub fn finish_stream(&mut self, stream: StreamId) -> Result<()> {
        let id = stream.0 as i32;
        self.call::<i32, i32>("proxy_on_done", stream.0, id)?;
        self.call::<i32, ()>("proxy_on_log", stream.0, id)?;
        self.call::<i32, ()>("proxy_on_delete", stream.0, id)?;
        self.stream_state_mut(stream)?.done = true;
        let state = self.store.data_mut();
        state
            .pending_calls
            .retain(|_, call| call.context_id != stream.0);
        Ok(())
    }

    /// The response the filter sent itself on this stream, if any.
    pub fn local_response(&self, stream: StreamId) -> Option<&LocalResponse> {
        self.stream_state(stream).ok()?.local_response.as_ref()
    }

    /// What the upstream server has received so far: `None` until the header phase
    /// continued (so also when the filter answered during it); then the headers, and the body
    /// bytes and trailers the filter let through. A local response sent after the headers
    /// went on marks it `reset`.
    pub fn upstream_request(&self, stream: StreamId) -> Option<&Forwarded> {
        self.stream_state(stream).ok()?.request.forwarded.as_ref()
    }

    /// The filter callbacks the host called on this stream and their answers, in order
    /// (including those run when the filter continued the stream).
    pub fn callbacks(&self, stream: StreamId) -> &[(Callback, Action)] {
        self.stream_state(stream)
            .map(|s| s.callbacks.as_slice())
            .unwrap_or_default()
    }

    /// Whether the host holds the request headers after the filter paused its header phase
    /// on a host with [`Host::set_headers_stop_iteration`]: nothing has reached the upstream.
    pub fn request_headers_held(&self, stream: StreamId) -> bool {
        self.stream_state(stream)
            .map(|s| s.request.stopped_headers)
            .unwrap_or(false)
    }

    /// Request body chunks and trailers the host holds back from the filter because its
    /// header phase paused the stream (Envoy's StopAllIteration): `(body, trailers)`.
    pub fn held_request(&self, stream: StreamId) -> Option<(Option<&[u8]>, Option<&Headers>)> {
        let request = &self.stream_state(stream).ok()?.request;
        Some((request.held_body.as_deref(), request.held_trailers.as_ref()))
    }

    /// What the downstream client has received of the upstream response so far.
    pub fn downstream_response(&self, stream: StreamId) -> Option<&Forwarded> {
        self.stream_state(stream).ok()?.response.forwarded.as_ref()
    }

    /// The request header map as it is now (after the filter's edits).
    pub fn request_headers(&self, stream: StreamId) -> Option<&Headers> {
        Some(&self.stream_state(stream).ok()?.request.headers)
    }

    /// The request body the filter is currently holding back (buffered after `Pause`).
    pub fn buffered_request_body(&self, stream: StreamId) -> Option<&[u8]> {
        Some(&self.stream_state(stream).ok()?.request.buffer)
    }

    /// How many times the filter called `proxy_continue_stream` (or `proxy_continue_request`)
    /// for the request of this stream.
    pub fn request_continue_calls(&self, stream: StreamId) -> u32 {
        self.stream_state(stream)
            .map(|s| s.request.continue_calls)
            .unwrap_or(0)
    }

    /// A property the filter set for this stream (`proxy_set_property` while the stream was
    /// the effective context: Envoy's filter state `wasm.<name>` for a one-segment path).
    pub fn filter_state(&self, stream: StreamId, path: &[&str]) -> Option<Vec<u8>> {
        let path: Vec<String> = path.iter().map(|p| p.to_string()).collect();
        self.stream_state(stream)
            .ok()?
            .filter_state
            .get(&path)
            .cloned()
    }

    /// Whether the filter closed (reset) the request or response side of the stream.
    pub fn stream_closed(&self, stream: StreamId) -> bool {
        self.stream_state(stream)
            .map(|s| s.request.closed || s.response.closed)
            .unwrap_or(false)
    }

    // ---- HTTP calls ---------------------------------------------------------------------

    /// Calls the filter dispatched with `proxy_http_call` that have not been answered.
    pub fn pending_http_calls(&self) -> Vec<HttpCall> {
        self.store.data().pending_calls.values().cloned().collect()
    }

    /// Answers a pending call: `proxy_on_http_call_response` runs with `headers` (a
    /// `:status` pseudo-header is prepended), `body` and no trailers readable.
    pub fn respond_http_call(
        &mut self,
        token: u32,
        status: u16,
        headers: impl Into<Headers>,
        body: &[u8],
    ) -> Result<()> {
        let mut all = Headers::from([(":status", status.to_string())]);
        for (name, value) in headers.into().raw_pairs() {
            all.add(name, value);
        }
        self.deliver_call_reply(
            token,
            CallReply {
                headers: all,
                body: body.to_vec(),
                trailers: Headers::new(),
            },
        )
    }

    /// Answers a pending call with exactly these headers, body and trailers.
    pub fn respond_http_call_with_trailers(
        &mut self,
        token: u32,
        headers: impl Into<Headers>,
        body: &[u8],
        trailers: impl Into<Headers>,
    ) -> Result<()> {
        let reply = CallReply {
            headers: headers.into(),
            body: body.to_vec(),
            trailers: trailers.into(),
        };
        self.deliver_call_reply(token, reply)
    }

    /// Fails a pending call the way Envoy reports a reset or timeout: the callback runs
    /// with no headers, body or trailers.
    pub fn fail_http_call(&mut self, token: u32) -> Result<()> {
        self.deliver_call_reply(token, CallReply::default())
    }

    fn deliver_call_reply(&mut self, token: u32, reply: CallReply) -> Result<()> {
        let call = self
            .store
            .data_mut()
            .pending_calls
            .remove(&token)
            .ok_or_else(|| anyhow!("no pending HTTP call with token {token}"))?;
        let params = (
            call.context_id as i32,
            token as i32,
            reply.headers.len() as i32,
            reply.body.len() as i32,
            reply.trailers.len() as i32,
        );
        self.store.data_mut().call_reply = Some(reply);
        let result = self.call::<(i32, i32, i32, i32, i32), ()>(
            "proxy_on_http_call_response",
            call.context_id,
            params,
        );
        self.store.data_mut().call_reply = None;
        result?;
        self.settle()
    }

    // ---- timers and clock ---------------------------------------------------------------

    /// Tick period the filter asked for, if any.
    pub fn tick_period(&self) -> Option<Duration> {
        self.store.data().tick_period
    }

    /// Fires `proxy_on_tick` on the root context once, now.
    pub fn tick(&mut self) -> Result<()> {
        self.call::<i32, ()>("proxy_on_tick", ROOT_CONTEXT, ROOT_CONTEXT as i32)?;
        self.settle()
    }

    /// Lets `by` pass on the shared clock as this VM's event loop would: ticks fire at their
    /// period and HTTP calls whose timeout elapses fail, in time order.
    pub fn advance(&mut self, by: Duration) -> Result<()> {
        let end = self.plugin.now() + by;
        loop {
            let state = self.store.data();
            let next_tick = state.next_tick.filter(|t| *t <= end);
            let next_timeout = state
                .pending_calls
                .values()
                .filter(|c| c.deadline <= end)
                .min_by_key(|c| c.deadline)
                .map(|c| (c.deadline, c.token));
            // A timeout due at the same instant as a tick is handled first.
            let event = match (next_tick, next_timeout) {
                (None, None) => break,
                (Some(tick), Some((deadline, token))) if deadline <= tick => {
                    TimerEvent::CallTimeout(deadline, token)
                }
                (Some(tick), _) => TimerEvent::Tick(tick),
                (None, Some((deadline, token))) => TimerEvent::CallTimeout(deadline, token),
            };
            match event {
                TimerEvent::Tick(at) => {
                    self.set_clock_at_least(at);
                    let state = self.store.data_mut();
                    state.next_tick = state.tick_period.map(|period| at + period);
                    self.tick()?;
                }
                TimerEvent::CallTimeout(at, token) => {
                    self.set_clock_at_least(at);
                    self.fail_http_call(token)?;
                }
            }
        }
        self.set_clock_at_least(end);
        Ok(())
    }

    fn set_clock_at_least(&self, at: SystemTime) {
        let mut shared = self.plugin.shared.lock();
        if shared.now < at {
            shared.now = at;
        }
    }

    // ---- shared queues ------------------------------------------------------------------

    /// Runs `proxy_on_queue_ready` for every queue this VM registered that received items
    /// since the last delivery; returns how many notifications ran.
    pub fn deliver_queue_ready(&mut self) -> Result<usize> {
        let vm = self.store.data().vm_index;
        let ready: Vec<(u32, u32)> = {
            let mut shared = self.plugin.shared.lock();
            shared
                .queues
                .iter_mut()
                .enumerate()
                .filter(|(_, q)| q.owner_vm == vm && q.ready_pending)
                .map(|(index, q)| {
                    q.ready_pending = false;
                    (q.owner_context, index as u32 + 1)
                })
                .collect()
        };
        for (context, queue) in &ready {
            self.call::<(i32, i32), ()>(
                "proxy_on_queue_ready",
                *context,
                (*context as i32, *queue as i32),
            )?;
            self.settle()?;
        }
        Ok(ready.len())
    }

    // ---- observations -------------------------------------------------------------------

    /// Every `proxy_log` line so far.
    pub fn logs(&self) -> &[LogEntry] {
        &self.store.data().logs
    }

    /// Whether some log line at `level` or above contains `needle`.
    pub fn logged(&self, level: LogLevel, needle: &str) -> bool {
        self.logs()
            .iter()
            .any(|l| l.level >= level && l.message.contains(needle))
    }

    /// What the filter wrote to WASI stdout / stderr.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.store.data().stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.store.data().stderr).into_owned()
    }

    /// How many times the filter called `proxy_done`.
    pub fn done_calls(&self) -> u32 {
        self.store.data().done_calls
    }

    /// Counter or gauge value by name (shared by all VMs of the plugin).
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.plugin.metric(name)
    }

    /// Whether a trap has made this VM unusable, and why.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }
}

/// Links the host functions and WASI, then makes every other function import a trap that
/// names it, and instantiates.
fn link(store: &mut Store<VmState>, module: &Module) -> Result<Instance> {
    let mut linker = Linker::new(engine());
    hostcalls::add_to_linker(&mut linker)?;
    wasi::add_to_linker(&mut linker)?;
    for import in module.imports() {
        let (module_name, name) = (import.module().to_string(), import.name().to_string());
        if linker.get(&mut *store, &module_name, &name).is_ok() {
            continue;
        }
        let ExternType::Func(ty) = import.ty() else {
            bail!(
                "the module imports {module_name}.{name}, which is not a function; this host provides none"
            );
        };
        let message = format!(
            "the filter called {module_name}.{name}, which this test host does not implement"
        );
        linker.func_new(&module_name, &name, ty, move |_, _, _| {
            Err(wasmtime::format_err!("{message}"))
        })?;
    }
    Ok(linker.instantiate(store, module)?)
}
