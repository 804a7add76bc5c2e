//! Data the host keeps: what all VMs of one plugin share (clock, shared data, queues,
//! metrics) and what one VM owns (contexts, streams, pending HTTP calls, logs).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::abi::{Action, LogLevel, MetricType, StreamType};
use crate::headers::Headers;

/// State of one Envoy process: every VM ("worker") of a plugin sees the same.
#[derive(Debug)]
pub(crate) struct SharedState {
    pub(crate) now: SystemTime,
    pub(crate) data: HashMap<Vec<u8>, SharedValue>,
    pub(crate) next_cas: u32,
    pub(crate) queues: Vec<Queue>,
    pub(crate) metrics: Vec<Metric>,
}

#[derive(Clone, Debug)]
pub(crate) struct SharedValue {
    pub(crate) value: Vec<u8>,
    pub(crate) cas: u32,
}

#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) name: Vec<u8>,
    pub(crate) owner_vm: usize,
    pub(crate) owner_context: u32,
    pub(crate) items: VecDeque<Vec<u8>>,
    pub(crate) ready_pending: bool,
}

#[derive(Debug)]
pub(crate) struct Metric {
    pub(crate) name: String,
    pub(crate) kind: MetricType,
    pub(crate) value: i64,
    pub(crate) samples: Vec<u64>,
}

/// Handle on the state shared by every VM of a plugin.
#[derive(Clone, Debug)]
pub(crate) struct Shared(Arc<Mutex<SharedState>>);

impl Shared {
    pub(crate) fn new(now: SystemTime) -> Shared {
        Shared(Arc::new(Mutex::new(SharedState {
            now,
            data: HashMap::new(),
            next_cas: 1,
            queues: Vec::new(),
            metrics: Vec::new(),
        })))
    }

    /// Locks the state; a poisoned lock (a test thread panicked) still yields the data.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SharedState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.lock().now
    }

    pub(crate) fn advance(&self, by: Duration) {
        let mut state = self.lock();
        state.now += by;
    }
}

/// One line the filter logged through `proxy_log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub level: LogLevel,
    pub context_id: u32,
    pub message: String,
}

/// A response the filter generated itself with `proxy_send_local_response`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub details: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub grpc_status: i32,
}

impl LocalResponse {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What was forwarded past the filter in one direction: for requests, what the upstream
/// server receives; for responses, what the downstream client receives. It exists once the
/// header phase continued (the headers went on); `body` grows as the body phase continues, so
/// headers with an empty `body` mean the peer got the headers and not one body byte.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    pub headers: Headers,
    pub body: Vec<u8>,
    /// Trailers, once the filter let them through.
    pub trailers: Option<Headers>,
    /// Whether everything up to the end of stream went on (nothing is held back any more).
    pub complete: bool,
    /// Whether the stream was reset towards the peer after it had received something: the
    /// filter sent a local response once the headers were already forwarded.
    pub reset: bool,
}

/// A filter callback the host called on a stream, in the order called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callback {
    RequestHeaders,
    /// `proxy_on_request_body` with the size of the body the filter sees (held chunks
    /// included) and the end-of-stream flag.
    RequestBody {
        size: usize,
        end_of_stream: bool,
    },
    RequestTrailers,
    ResponseHeaders,
    ResponseBody {
        size: usize,
        end_of_stream: bool,
    },
}

/// A `proxy_http_call` the filter dispatched and the test has not answered yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    pub cluster: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
    pub timeout: Duration,
    pub(crate) context_id: u32,
    pub(crate) deadline: SystemTime,
}

impl HttpCall {
    pub fn method(&self) -> Option<&str> {
        self.headers.get(":method")
    }

    pub fn path(&self) -> Option<&str> {
        self.headers.get(":path")
    }

    pub fn authority(&self) -> Option<&str> {
        self.headers.get(":authority")
    }
}

/// Progress of one direction (request or response) of an HTTP stream through the filter.
#[derive(Clone, Debug, Default)]
pub(crate) struct Direction {
    pub(crate) headers: Headers,
    pub(crate) trailers: Headers,
    /// Body the filter currently sees: chunks it answered with `Pause` accumulate here
    /// (Envoy's `StopIterationAndBuffer`).
    pub(crate) buffer: Vec<u8>,
    pub(crate) headers_sent: bool,
    pub(crate) end_of_stream: bool,
    /// The header callback returned `Pause` and the stream was not continued yet. Envoy
    /// (proxy-wasm-cpp-host) turns that `Pause` into `StopAllIterationAndWatermark`: body and
    /// trailers of this direction are not passed to the filter but wait in `held_body` /
    /// `held_trailers` until the stream is continued.
    pub(crate) stopped_all: bool,
    /// The header callback returned `Pause` on a host that holds paused headers but still
    /// passes body and trailers to the filter (Envoy 1.35+ with the Wasm `PluginConfig` field
    /// `allow_on_headers_stop_iteration`, which turns that `Pause` into `StopIteration`): the
    /// headers wait in the host until a later callback returns `Continue` or the filter
    /// continues the stream; both release them together with the body the filter buffered.
    pub(crate) stopped_headers: bool,
    /// Body chunks that arrived while `stopped_all` (buffered by the host, unseen by the filter).
    pub(crate) held_body: Option<Vec<u8>>,
    /// Trailers that arrived while `stopped_all`.
    pub(crate) held_trailers: Option<Headers>,
    /// The filter was given the trailers and they have not gone on yet (it answered `Pause`;
    /// they go on, with the buffered body, when it continues).
    pub(crate) trailers_pending: bool,
    pub(crate) forwarded: Option<Forwarded>,
    pub(crate) continue_calls: u32,
    pub(crate) closed: bool,
}

impl Direction {
    /// Forwards the headers as the filter left them, if they have not gone on yet.
    pub(crate) fn forward_headers(&mut self) {
        if self.forwarded.is_none() {
            self.forwarded = Some(Forwarded {
                headers: self.headers.clone(),
                ..Forwarded::default()
            });
        }
    }

    /// Forwards the headers (if not yet) and the body the filter holds, plus trailers the filter
    /// let through; marks the direction complete when nothing is left to come or held.
    pub(crate) fn release(&mut self) {
        self.stopped_headers = false;
        self.forward_headers();
        let Some(forwarded) = self.forwarded.as_mut() else {
            return;
        };
        forwarded.body.append(&mut self.buffer);
        if self.trailers_pending {
            self.trailers_pending = false;
            forwarded.trailers = Some(self.trailers.clone());
        }
        forwarded.complete = self.end_of_stream
            && !self.stopped_all
            && self.held_body.is_none()
            && self.held_trailers.is_none();
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct StreamState {
    pub(crate) request: Direction,
    pub(crate) response: Direction,
    pub(crate) local_response: Option<LocalResponse>,
    pub(crate) done: bool,
    pub(crate) callbacks: Vec<(Callback, Action)>,
    /// Properties the filter set while this stream was the effective context (Envoy keeps
    /// them in the stream's filter state, where its access log reads them).
    pub(crate) filter_state: HashMap<Vec<String>, Vec<u8>>,
}

/// The reply the test gave to an HTTP call, visible to the filter while
/// `proxy_on_http_call_response` runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallReply {
    pub(crate) headers: Headers,
    pub(crate) body: Vec<u8>,
    pub(crate) trailers: Headers,
}

pub(crate) type ForeignFunction = Box<dyn FnMut(&[u8]) -> Option<Vec<u8>> + Send>;

/// Everything one VM instance owns; the `wasmtime::Store` data.
pub(crate) struct VmState {
    pub(crate) shared: Shared,
    pub(crate) vm_index: usize,
    pub(crate) root_context: u32,
    /// Context the host calls address: the running callback's, or the one set with
    /// `proxy_set_effective_context`.
    pub(crate) effective_context: u32,
    pub(crate) vm_configuration: Vec<u8>,
    pub(crate) plugin_configuration: Vec<u8>,
    pub(crate) streams: BTreeMap<u32, StreamState>,
    pub(crate) call_reply: Option<CallReply>,
    pub(crate) pending_calls: BTreeMap<u32, HttpCall>,
    pub(crate) next_call_token: u32,
    pub(crate) known_clusters: Option<Vec<String>>,
    pub(crate) tick_period: Option<Duration>,
    pub(crate) next_tick: Option<SystemTime>,
    pub(crate) log_level: LogLevel,
    pub(crate) logs: Vec<LogEntry>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) properties: HashMap<Vec<String>, Vec<u8>>,
    pub(crate) metric_ids: Vec<usize>,
    pub(crate) foreign_functions: HashMap<String, ForeignFunction>,
    pub(crate) done_calls: u32,
    pub(crate) random_state: u64,
    /// Whether a `Pause` from a header callback holds only the headers (Envoy's
    /// `allow_on_headers_stop_iteration`) instead of the whole stream.
    pub(crate) headers_stop_iteration: bool,
    /// `proxy_continue_stream` calls made during the running callback. Envoy defers them
    /// until the VM call returns (`addAfterVmCallAction`); the host runs them then.
    pub(crate) deferred_continues: Vec<(u32, StreamType)>,
}

impl VmState {
    pub(crate) fn new(shared: Shared, vm_index: usize) -> VmState {
        VmState {
            shared,
            vm_index,
            root_context: 0,
            effective_context: 0,
            vm_configuration: Vec::new(),
            plugin_configuration: Vec::new(),
            streams: BTreeMap::new(),
            call_reply: None,
            pending_calls: BTreeMap::new(),
            next_call_token: 1,
            known_clusters: None,
            tick_period: None,
            next_tick: None,
            log_level: LogLevel::Trace,
            logs: Vec::new(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            properties: HashMap::new(),
            metric_ids: Vec::new(),
            foreign_functions: HashMap::new(),
            done_calls: 0,
            deferred_continues: Vec::new(),
            headers_stop_iteration: false,
            random_state: 0x9e37_79b9_7f4a_7c15 ^ (vm_index as u64),
        }
    }

    /// The stream the effective context belongs to, if it is an HTTP context.
    pub(crate) fn effective_stream(&mut self) -> Option<&mut StreamState> {
        self.streams.get_mut(&self.effective_context)
    }

    /// Deterministic pseudo-random bytes (splitmix64) for WASI `random_get`.
    pub(crate) fn fill_random(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.random_state = self.random_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.random_state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            for (byte, random) in chunk.iter_mut().zip(z.to_le_bytes()) {
                *byte = random;
            }
        }
    }
}
