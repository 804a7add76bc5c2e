//! proxy-wasm glue: moves data between the host and the pure decisions in [`crate::front`].
//!
//! Root context states: [`RootState::Unconfigured`] → [`RootState::Running`]. Per issuer keys
//! follow [`crate::keys::KeyState`] (`AwaitingKeys` → `Ready`). Each HTTP context is a
//! [`Phase`]: `Start` → `Checking` (maybe paused, maybe registered as a key waiter) →
//! `Forwarded` or `Answered`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::cache::TokenCache;
use crate::challenge::{Denial, LocalResponse};
use crate::config::{Config, IdentityHeader};
use crate::front::{
    self, Denied, HeadDecision, HeaderEdit, McpNeed, PendingAuth, RequestHead, TokenOutcome,
};
use crate::host::{self, HeaderPair, HostStore};
use crate::identity::Identity;
use crate::jwks::KeySet;
use crate::keys::IssuerKeys;
use crate::mcp_request::{McpCall, McpHeaders};
use crate::stats::Counter;

const TICK: Duration = Duration::from_millis(500);

/// Why a request waits for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitReason {
    /// The issuer has no keys yet: 503 at the deadline.
    FirstKeys,
    /// The token's `kid` is unknown and a refetch runs: 401 at the deadline.
    KidRefetch,
}

struct Waiter {
    phase: Rc<RefCell<Phase>>,
    issuer: usize,
    reason: WaitReason,
    deadline_ms: u64,
}

/// Everything one configured plugin instance shares between its root and HTTP contexts.
struct Runtime {
    cfg: Rc<Config>,
    cache: TokenCache,
    issuers: Vec<IssuerKeys>,
    waiters: BTreeMap<u32, Waiter>,
    metrics: Vec<Option<u32>>,
}

impl Runtime {
    fn count(&self, c: Counter) {
        if let Some(Some(id)) = self.metrics.get(c.index()) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    /// Dispatches a due fetch. Only called from root-context callbacks: the SDK routes the
    /// response to the context that was active at dispatch time.
    fn start_fetch_if_due(&mut self, issuer: usize, now_ms: u64) {
        let Some(keys) = self.issuers.get_mut(issuer) else {
            return;
        };
        let Some(remote) = keys.remote().cloned() else {
            return;
        };
        if !keys.fetch_due(now_ms) {
            return;
        }
        let headers = vec![
            (":method", "GET"),
            (":path", remote.path.as_str()),
            (":authority", remote.authority.as_str()),
            ("accept", "application/json"),
        ];
        match hostcalls::dispatch_http_call(
            &remote.cluster,
            headers,
            None,
            vec![],
            remote.fetch_timeout,
        ) {
            Ok(token) => keys.fetch_started(token, now_ms),
            Err(status) => {
                keys.dispatch_failed(now_ms);
                self.count(Counter::JwksFetchFailed);
                let name = self
                    .cfg
                    .issuers
                    .get(issuer)
                    .map_or("", |i| i.issuer.as_str());
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "mcp-auth: jwks {name} fetch failed: cannot call cluster {} ({status:?})",
                        remote.cluster
                    ),
                );
            }
        }
    }
}

/// Per-request progress.
enum Phase {
    Start,
    Checking(Box<Pending>),
    Forwarded { cors_origin: Option<String> },
    Answered,
}

enum Calls {
    NotNeeded,
    AwaitingBody(McpHeaders),
    Known(Vec<McpCall>),
    /// The MCP request is malformed; answered once the token has been checked.
    Rejected(Denial),
}

struct Pending {
    auth: PendingAuth,
    identity: Option<Rc<Identity>>,
    calls: Calls,
    kid_refetched: bool,
    wait_deadline_ms: Option<u64>,
    /// The host holds the request because we returned `Pause`.
    paused: bool,
    /// How many values of each configured identity header the client sent.
    sent_identity: Vec<u8>,
    /// `Authorization` removed and identity headers set.
    edits_applied: bool,
}

/// Where `advance` is called from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// Inside one of this request's callbacks: the returned action takes effect.
    Callback,
    /// From the root context (keys arrived, deadline): must resume explicitly.
    Root,
}

fn send(resp: &LocalResponse) {
    let headers: Vec<(&str, &str)> = resp
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let _ = hostcalls::send_http_response(resp.status, headers, Some(&resp.body));
}

fn deny(rt: &Runtime, phase: &mut Phase, denied: &Denied) -> Action {
    let resp = denied.response(&rt.cfg);
    let prefix = denied
        .resource
        .and_then(|i| rt.cfg.resources.get(i))
        .map_or("-", |r| r.path_prefix.as_str());
    host::log(
        LogLevel::Debug,
        &format!(
            "mcp-auth: deny {} {} resource={prefix} reason=\"{}\"",
            resp.status,
            denied.denial.counter().name(),
            denied.denial.reason()
        ),
    );
    rt.count(denied.denial.counter());
    send(&resp);
    *phase = Phase::Answered;
    Action::Pause
}

fn register_waiter(
    rt: &mut Runtime,
    id: u32,
    phase_rc: &Rc<RefCell<Phase>>,
    p: &mut Pending,
    issuer: usize,
    reason: WaitReason,
    now_ms: u64,
) {
    let timeout = u64::try_from(rt.cfg.key_wait_timeout.as_millis()).unwrap_or(u64::MAX);
    let deadline_ms = *p
        .wait_deadline_ms
        .get_or_insert(now_ms.saturating_add(timeout));
    rt.waiters.insert(
        id,
        Waiter {
            phase: Rc::clone(phase_rc),
            issuer,
            reason,
            deadline_ms,
        },
    );
}

/// Moves a request forward as far as the available information allows.
fn advance(rt: &mut Runtime, id: u32, phase_rc: &Rc<RefCell<Phase>>, caller: Caller) -> Action {
    let Ok(mut phase) = phase_rc.try_borrow_mut() else {
        return Action::Pause;
    };
    let Phase::Checking(p) = &mut *phase else {
        return Action::Continue;
    };
    let now_ms = host::now_ms();
    let denied = |p: &Pending, denial| Denied {
        denial,
        resource: Some(p.auth.resource),
        cors_origin: p.auth.cors_origin.clone(),
    };
    if p.identity.is_none() {
        let cfg = Rc::clone(&rt.cfg);
        let (outcome, cache) = {
            let issuers = &rt.issuers;
            let keys =
                |i: usize| -> Option<&KeySet> { issuers.get(i).and_then(IssuerKeys::key_set) };
            front::authenticate(
                &cfg,
                &mut rt.cache,
                &HostStore,
                p.auth.resource,
                &p.auth.token,
                &keys,
                now_ms / 1000,
            )
        };
        match cache {
            Some(true) => rt.count(Counter::CacheHit),
            Some(false) => rt.count(Counter::CacheMiss),
            None => {}
        }
        match outcome {
            TokenOutcome::Verified(identity) => p.identity = Some(identity),
            TokenOutcome::Denied(d) => {
                let d = denied(p, d);
                return deny(rt, &mut phase, &d);
            }
            TokenOutcome::AwaitKeys { issuer } => {
                register_waiter(rt, id, phase_rc, p, issuer, WaitReason::FirstKeys, now_ms);
                p.paused = true;
                return Action::Pause;
            }
            TokenOutcome::UnknownKid { issuer } => {
                let allowed = rt
                    .issuers
                    .get(issuer)
                    .is_some_and(|k| k.kid_refetch_allowed(now_ms));
                if p.kid_refetched || !allowed {
                    let d = denied(
                        p,
                        Denial::InvalidToken(crate::token::TokenError::UnknownKid.description()),
                    );
                    return deny(rt, &mut phase, &d);
                }
                p.kid_refetched = true;
                p.wait_deadline_ms = None;
                if let Some(keys) = rt.issuers.get_mut(issuer) {
                    keys.request_kid_refetch(now_ms);
                }
                register_waiter(rt, id, phase_rc, p, issuer, WaitReason::KidRefetch, now_ms);
                p.paused = true;
                return Action::Pause;
            }
        }
    }
    let Some(identity) = &p.identity else {
        return Action::Pause;
    };
    if !p.edits_applied {
        // Headers must be final before they continue (Envoy forwards them as soon as the header
        // phase continues, also when the body is still to be inspected).
        const MAP: MapType = MapType::HttpRequestHeaders;
        for edit in front::upstream_edits(&rt.cfg, identity, &p.sent_identity) {
            let _ = match edit {
                HeaderEdit::Remove(name) => hostcalls::set_map_value(MAP, name, None),
                HeaderEdit::Replace(name, value) => {
                    hostcalls::set_map_value(MAP, name, Some(value))
                }
                HeaderEdit::Add(name, value) => hostcalls::add_map_value(MAP, name, value),
            };
        }
        p.edits_applied = true;
    }
    let calls = match &p.calls {
        Calls::AwaitingBody(headers) => {
            // Check what is known before the headers go on: the base scopes, and the tool named by
            // Mcp-Method/Mcp-Name when the client sent them. The body is checked when complete.
            let announced = front::calls_from_headers(headers);
            if let Err(d) = front::authorize(&rt.cfg, p.auth.resource, identity, &announced) {
                let d = denied(p, d);
                return deny(rt, &mut phase, &d);
            }
            // proxy-wasm hosts (Envoy) deliver the body only once the header phase continues;
            // the body callback then buffers it (paused) until the decision.
            return continue_request(p, caller);
        }
        Calls::Rejected(d) => {
            let d = denied(p, d.clone());
            return deny(rt, &mut phase, &d);
        }
        Calls::NotNeeded => &[][..],
        Calls::Known(calls) => calls.as_slice(),
    };
    match front::authorize(&rt.cfg, p.auth.resource, identity, calls) {
        Ok(()) => {
            rt.count(Counter::Allowed);
            let action = continue_request(p, caller);
            *phase = Phase::Forwarded {
                cors_origin: p.auth.cors_origin.clone(),
            };
            action
        }
        Err(d) => {
            let d = denied(p, d);
            deny(rt, &mut phase, &d)
        }
    }
}

/// Lets the request go on: from a callback by returning `Continue`, from the root context by
/// resuming it if it is paused.
fn continue_request(p: &mut Pending, caller: Caller) -> Action {
    if caller == Caller::Root && p.paused {
        let _ = hostcalls::resume_http_request();
    }
    p.paused = false;
    Action::Continue
}

/// Root context states.
enum RootState {
    /// Before a valid configuration (or after an invalid one).
    Unconfigured,
    /// Configured.
    Running(Rc<RefCell<Runtime>>),
}

struct Root {
    state: RootState,
}

impl Root {
    fn runtime(&self) -> Option<&Rc<RefCell<Runtime>>> {
        match &self.state {
            RootState::Running(rt) => Some(rt),
            RootState::Unconfigured => None,
        }
    }

    fn wake(rt_rc: &Rc<RefCell<Runtime>>, issuer: usize) {
        let Ok(mut rt) = rt_rc.try_borrow_mut() else {
            return;
        };
        let ids: Vec<u32> = rt
            .waiters
            .iter()
            .filter(|(_, w)| w.issuer == issuer)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(w) = rt.waiters.remove(&id) else {
                continue;
            };
            if hostcalls::set_effective_context(id).is_ok() {
                advance(&mut rt, id, &w.phase, Caller::Root);
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(rt_rc) = self.runtime().cloned() else {
            return;
        };
        let now_ms = host::now_ms();
        let issuer = {
            let Ok(mut rt) = rt_rc.try_borrow_mut() else {
                return;
            };
            let Some(i) = rt.issuers.iter().position(|k| k.is_fetch(token_id)) else {
                return;
            };
            let name = rt
                .cfg
                .issuers
                .get(i)
                .map_or(String::new(), |x| x.issuer.clone());
            let head = host::header_map_bytes(MapType::HttpCallResponseHeaders);
            let status = host::parse_header_map(&head)
                .unwrap_or_default()
                .into_iter()
                .find(|(k, _)| *k == b":status")
                .map(|(_, v)| v);
            let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default();
            let result = match status {
                Some(b"200") => KeySet::parse(&body).map_err(|e| e.to_string()),
                Some(s) => Err(format!("status {}", String::from_utf8_lossy(s))),
                None => Err("no response (timeout or connection failure)".to_string()),
            };
            match (result, rt.issuers.get_mut(i)) {
                (Ok(parsed), Some(keys)) => {
                    let n = parsed.keys.len();
                    keys.fetch_succeeded(parsed.keys, now_ms);
                    rt.count(Counter::JwksFetchOk);
                    host::log(
                        LogLevel::Info,
                        &format!("mcp-auth: jwks {name} loaded {n} keys"),
                    );
                    for skipped in parsed.skipped {
                        host::log(
                            LogLevel::Debug,
                            &format!("mcp-auth: jwks {name} ignored {skipped}"),
                        );
                    }
                }
                (Err(why), Some(keys)) => {
                    keys.fetch_failed(now_ms);
                    rt.count(Counter::JwksFetchFailed);
                    host::log(
                        LogLevel::Warn,
                        &format!("mcp-auth: jwks {name} fetch failed: {why}"),
                    );
                }
                (_, None) => return,
            }
            i
        };
        Self::wake(&rt_rc, issuer);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        let cfg = match Config::parse(&bytes) {
            Ok(c) => c,
            Err(e) => {
                host::log(
                    LogLevel::Error,
                    &format!("mcp-auth: invalid configuration: {e}"),
                );
                self.state = RootState::Unconfigured;
                return false;
            }
        };
        let metrics = Counter::ALL
            .iter()
            .map(|c| hostcalls::define_metric(MetricType::Counter, c.name()).ok())
            .collect();
        let issuers: Vec<IssuerKeys> = cfg
            .issuers
            .iter()
            .map(|i| IssuerKeys::new(&i.jwks))
            .collect();
        let cache = TokenCache::new(&cfg.fingerprint, cfg.token_cache_slots);
        let mut rt = Runtime {
            cfg: Rc::new(cfg),
            cache,
            issuers,
            waiters: BTreeMap::new(),
            metrics,
        };
        let now_ms = host::now_ms();
        for i in 0..rt.issuers.len() {
            rt.start_fetch_if_due(i, now_ms);
        }
        let _ = hostcalls::set_tick_period(TICK);
        host::log(
            LogLevel::Info,
            &format!(
                "mcp-auth: configured {} resource(s), {} issuer(s)",
                rt.cfg.resources.len(),
                rt.cfg.issuers.len()
            ),
        );
        self.state = RootState::Running(Rc::new(RefCell::new(rt)));
        true
    }

    fn on_tick(&mut self) {
        let Some(rt_rc) = self.runtime().cloned() else {
            return;
        };
        let Ok(mut rt) = rt_rc.try_borrow_mut() else {
            return;
        };
        let now_ms = host::now_ms();
        for i in 0..rt.issuers.len() {
            rt.start_fetch_if_due(i, now_ms);
        }
        let expired: Vec<u32> = rt
            .waiters
            .iter()
            .filter(|(_, w)| w.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(w) = rt.waiters.remove(&id) else {
                continue;
            };
            if hostcalls::set_effective_context(id).is_err() {
                continue;
            }
            let Ok(mut phase) = w.phase.try_borrow_mut() else {
                continue;
            };
            let Phase::Checking(p) = &*phase else {
                continue;
            };
            let denial = match w.reason {
                WaitReason::FirstKeys => Denial::KeysUnavailable,
                WaitReason::KidRefetch => {
                    Denial::InvalidToken(crate::token::TokenError::UnknownKid.description())
                }
            };
            let d = Denied {
                denial,
                resource: Some(p.auth.resource),
                cors_origin: p.auth.cors_origin.clone(),
            };
            deny(&rt, &mut phase, &d);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            id: context_id,
            rt: self.runtime().cloned(),
            phase: Rc::new(RefCell::new(Phase::Start)),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    id: u32,
    rt: Option<Rc<RefCell<Runtime>>>,
    phase: Rc<RefCell<Phase>>,
}

/// The request headers the filter reads (the first value of each, every `Authorization`, how
/// many values of each identity header), gathered in one pass over the header map, borrowing
/// from the host's buffer: this runs on every request.
struct SeenHeaders<'a> {
    method: Option<Cow<'a, str>>,
    path: Option<Cow<'a, str>>,
    origin: Option<Cow<'a, str>>,
    mcp_method: Option<Cow<'a, str>>,
    mcp_name: Option<Cow<'a, str>>,
    authorization: Vec<Cow<'a, str>>,
    identity: Vec<u8>,
}

impl<'a> SeenHeaders<'a> {
    fn gather(pairs: &[HeaderPair<'a>], identity_headers: &[IdentityHeader]) -> Self {
        let mut seen = SeenHeaders {
            method: None,
            path: None,
            origin: None,
            mcp_method: None,
            mcp_name: None,
            authorization: Vec::new(),
            identity: vec![0; identity_headers.len()],
        };
        for &(name, value) in pairs {
            if name.eq_ignore_ascii_case(b"authorization") {
                seen.authorization.push(String::from_utf8_lossy(value));
                continue;
            }
            let slot = if name.eq_ignore_ascii_case(b":method") {
                &mut seen.method
            } else if name.eq_ignore_ascii_case(b":path") {
                &mut seen.path
            } else if name.eq_ignore_ascii_case(b"origin") {
                &mut seen.origin
            } else if name.eq_ignore_ascii_case(b"mcp-method") {
                &mut seen.mcp_method
            } else if name.eq_ignore_ascii_case(b"mcp-name") {
                &mut seen.mcp_name
            } else {
                if let Some(i) = identity_headers
                    .iter()
                    .position(|h| name.eq_ignore_ascii_case(h.header.as_bytes()))
                    && let Some(n) = seen.identity.get_mut(i)
                {
                    *n = n.saturating_add(1);
                }
                continue;
            };
            if slot.is_none() {
                *slot = Some(String::from_utf8_lossy(value));
            }
        }
        seen
    }
}

impl Http {
    fn unconfigured() -> Action {
        send(&crate::challenge::json_error(
            503,
            "temporarily_unavailable",
            "authorization filter not configured",
        ));
        Action::Pause
    }

    fn on_headers(&mut self, rt_rc: &Rc<RefCell<Runtime>>, end_of_stream: bool) -> Action {
        let Ok(mut rt) = rt_rc.try_borrow_mut() else {
            return Self::unconfigured();
        };
        let map = host::header_map_bytes(MapType::HttpRequestHeaders);
        let pairs = host::parse_header_map(&map).unwrap_or_default();
        let seen = SeenHeaders::gather(&pairs, &rt.cfg.identity_headers);
        let head = RequestHead {
            method: seen.method.as_deref().unwrap_or_default(),
            path: seen.path.as_deref().unwrap_or_default(),
            origin: seen.origin.as_deref(),
            authorization: seen.authorization.iter().map(AsRef::as_ref).collect(),
            mcp_method: seen.mcp_method.as_deref(),
            mcp_name: seen.mcp_name.as_deref(),
        };
        let decision = front::on_headers(&rt.cfg, &head);
        let pending = match decision {
            HeadDecision::Serve(resp, counter) => {
                rt.count(counter);
                send(&resp);
                if let Ok(mut phase) = self.phase.try_borrow_mut() {
                    *phase = Phase::Answered;
                }
                return Action::Pause;
            }
            HeadDecision::Pass => {
                if let Ok(mut phase) = self.phase.try_borrow_mut() {
                    *phase = Phase::Forwarded { cors_origin: None };
                }
                return Action::Continue;
            }
            HeadDecision::Deny(d) => {
                let Ok(mut phase) = self.phase.try_borrow_mut() else {
                    return Action::Pause;
                };
                return deny(&rt, &mut phase, &d);
            }
            HeadDecision::Authenticate(p) => p,
        };
        let calls = match &pending.mcp {
            McpNeed::NotNeeded => Calls::NotNeeded,
            McpNeed::Malformed(d) => Calls::Rejected(d.clone()),
            // No body will come: decided (400) after the token check, like any body problem.
            McpNeed::FromBody(h) if end_of_stream => match front::mcp_calls(h, b"") {
                Ok(c) => Calls::Known(c),
                Err(d) => Calls::Rejected(d),
            },
            McpNeed::FromBody(h) => Calls::AwaitingBody(h.clone()),
        };
        if let Ok(mut phase) = self.phase.try_borrow_mut() {
            *phase = Phase::Checking(Box::new(Pending {
                auth: pending,
                identity: None,
                calls,
                kid_refetched: false,
                wait_deadline_ms: None,
                paused: false,
                sent_identity: seen.identity,
                edits_applied: false,
            }));
        }
        advance(&mut rt, self.id, &self.phase, Caller::Callback)
    }

    fn on_body(
        &mut self,
        rt_rc: &Rc<RefCell<Runtime>>,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let Ok(mut rt) = rt_rc.try_borrow_mut() else {
            return Action::Pause;
        };
        {
            let Ok(mut phase) = self.phase.try_borrow_mut() else {
                return Action::Pause;
            };
            let p = match &mut *phase {
                Phase::Checking(p) => p,
                Phase::Forwarded { .. } | Phase::Start => return Action::Continue,
                Phase::Answered => return Action::Pause,
            };
            let Calls::AwaitingBody(headers) = &p.calls else {
                // Body of a request waiting for keys only: hold it until the decision.
                p.paused = true;
                return Action::Pause;
            };
            if body_size > rt.cfg.max_body_bytes {
                let d = Denied {
                    denial: Denial::BodyTooLarge,
                    resource: Some(p.auth.resource),
                    cors_origin: p.auth.cors_origin.clone(),
                };
                rt.waiters.remove(&self.id);
                return deny(&rt, &mut phase, &d);
            }
            if !end_of_stream {
                p.paused = true;
                return Action::Pause;
            }
            let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default();
            // A malformed body is answered after the token check (at once if it is done).
            p.calls = match front::mcp_calls(headers, &body) {
                Ok(calls) => Calls::Known(calls),
                Err(denial) => Calls::Rejected(denial),
            };
            if rt.waiters.contains_key(&self.id) {
                // Still waiting for keys; the root resumes the request.
                p.paused = true;
                return Action::Pause;
            }
        }
        advance(&mut rt, self.id, &self.phase, Caller::Callback)
    }

    /// Trailers end the request: the body the host holds is the whole body, so it is decided on
    /// now. Answering `Continue` before that would let the host forward a held, unchecked body.
    fn on_trailers(&mut self, rt_rc: &Rc<RefCell<Runtime>>) -> Action {
        let limit = {
            let Ok(phase) = self.phase.try_borrow() else {
                return Action::Pause;
            };
            match &*phase {
                Phase::Forwarded { .. } | Phase::Start => return Action::Continue,
                Phase::Answered => return Action::Pause,
                Phase::Checking(_) => {}
            }
            let Ok(rt) = rt_rc.try_borrow() else {
                return Action::Pause;
            };
            rt.cfg.max_body_bytes.saturating_add(1)
        };
        let held = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, limit)
            .ok()
            .flatten()
            .map_or(0, |body| body.len());
        self.on_body(rt_rc, held, true)
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        match self.rt.clone() {
            Some(rt) => self.on_headers(&rt, end_of_stream),
            None => Self::unconfigured(),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.rt.clone() {
            Some(rt) => self.on_body(&rt, body_size, end_of_stream),
            None => Action::Pause,
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match self.rt.clone() {
            Some(rt) => self.on_trailers(&rt),
            None => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(phase) = self.phase.try_borrow() else {
            return Action::Continue;
        };
        if let Phase::Forwarded {
            cors_origin: Some(origin),
        } = &*phase
        {
            let present = hostcalls::get_map_value_bytes(
                MapType::HttpResponseHeaders,
                "access-control-allow-origin",
            )
            .ok()
            .flatten()
            .is_some();
            if !present {
                for (k, v) in crate::cors::response_headers(origin) {
                    let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, &k, &v);
                }
            }
        }
        Action::Continue
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(Ok(mut rt)) = self.rt.as_ref().map(|rt| rt.try_borrow_mut()) {
            rt.waiters.remove(&self.id);
        }
    }
}

/// Registers the root context factory (called from `_initialize`).
pub fn register() {
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root {
            state: RootState::Unconfigured,
        })
    });
}
