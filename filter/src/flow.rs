//! One request's way through the checks over its callbacks, including the wait for keys.
//!
//! Pure: the glue passes in what the host said (the headers, the body, the time, which request)
//! and carries out the returned [`Step`]: apply these header edits, answer with this response,
//! hold the request, let it go on. A request whose issuer has no keys yet, or whose `kid` is
//! unknown, waits as a [`Waiter`] (at most `key_wait_timeout_ms`); the root context hands it back
//! when a fetch of that issuer ends ([`Runtime::take_waiters_of`], then [`Runtime::advance`]) or
//! when its deadline passes ([`Runtime::take_expired`], then [`Waiter::deadline_passed`]).
//!
//! Request states: [`RequestState::Start`] → `Checking` (maybe held, maybe waiting for keys) →
//! `Forwarded` or `Answered`.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::{cell::RefCell, mem};

use proxy_wasm::types::Action;

use crate::audit::{self, Audit};
use crate::cache::{SharedStore, TokenCache};
use crate::config::Config;
use crate::front::{
    self, Authenticated, CacheLookup, Denied, HeadDecision, HeaderEdit, McpNeed, PendingAuth,
    SeenHeaders, TokenOutcome,
};
use crate::identity::Identity;
use crate::jwks::KeySet;
use crate::keys::IssuerKeys;
use crate::mcp_request::{McpCall, McpHeaders};
use crate::response::{Denial, LocalResponse};
use crate::stats::Counter;
use crate::token::TokenError;

/// The host clock in milliseconds since the Unix epoch, read only when a decision needs it.
pub type Clock<'a> = &'a dyn Fn() -> u64;

/// A request's state, shared between its HTTP context and (while it waits) the root context.
pub type SharedRequest = Rc<RefCell<RequestState>>;

/// Where a request stands.
#[derive(Debug)]
pub enum RequestState {
    /// Before its headers.
    Start,
    /// Its token, and maybe its body, are being checked.
    Checking(Box<Checks>),
    /// Let through; an allowed `Origin` gets CORS headers on the upstream's response.
    Forwarded {
        /// The allowed `Origin`, if the request had one.
        cors_origin: Option<String>,
    },
    /// Answered locally.
    Answered,
}

impl RequestState {
    /// The origin to add CORS headers for on the upstream's response, if any.
    pub fn response_cors_origin(&self) -> Option<&str> {
        match self {
            RequestState::Forwarded { cors_origin } => cors_origin.as_deref(),
            _ => None,
        }
    }

    /// Takes in the final [`Next`] of a step: a denial answers the request, an allowed request
    /// is forwarded.
    fn conclude(&mut self, next: &Next) {
        match next {
            Next::Deny(_) => *self = RequestState::Answered,
            Next::Allow { .. } => {
                let cors_origin = match self {
                    RequestState::Checking(checks) => checks.auth.cors_origin.take(),
                    _ => None,
                };
                *self = RequestState::Forwarded { cors_origin };
            }
            Next::Serve(..) | Next::Hold | Next::Continue { .. } => {}
        }
    }
}

/// Why a request waits for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// The issuer has no keys yet.
    FirstKeys,
    /// The token's `kid` is unknown and a refetch of the issuer's keys runs.
    KidRefetch,
}

impl WaitReason {
    /// The answer when the wait ends without the keys the token needs: no keys at all is the
    /// server's problem (503, retry later); a `kid` still unknown after a refetch is the token's
    /// (401).
    pub fn denial(self) -> Denial {
        match self {
            WaitReason::FirstKeys => Denial::KeysUnavailable,
            WaitReason::KidRefetch => TokenError::UnknownKid.into(),
        }
    }
}

/// A wait for an issuer's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyWait {
    /// Issuer index.
    pub issuer: usize,
    /// Why.
    pub reason: WaitReason,
    /// Host time (ms) at which the wait ends with [`WaitReason::denial`].
    pub deadline_ms: u64,
}

/// How far the token check of a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenCheck {
    /// Not checked yet.
    Unchecked,
    /// Waiting for keys; checked again when a fetch of the issuer ends.
    Waiting(KeyWait),
    /// Valid; the upstream headers were edited for this identity.
    Verified(Rc<Identity>),
}

/// What the MCP calls of a request are, as far as known.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Calls {
    /// No per-tool scopes apply.
    NotNeeded,
    /// From the body still to come, checked against these headers.
    AwaitingBody(McpHeaders),
    /// Known.
    Known(Vec<McpCall>),
    /// The MCP request is malformed; answered once the token has been checked, so that an
    /// invalid token is told first.
    Rejected(Denial),
}

/// A request being checked.
#[derive(Debug)]
pub struct Checks {
    auth: PendingAuth,
    token: TokenCheck,
    calls: Calls,
    /// The host holds the request (a callback returned `Pause`): resuming it from the root
    /// context needs an explicit call.
    held: bool,
    /// How many values of each configured identity header the client sent; moved into the
    /// header edits once the token is verified.
    sent_identity: Vec<u8>,
}

impl Checks {
    /// The one place a request's denial gets the resource and origin its response needs.
    fn denied(&self, denial: Denial) -> Denied {
        Denied {
            denial,
            resource: Some(self.auth.resource),
            cors_origin: self.auth.cors_origin.clone(),
        }
    }

    /// Lets the request go on: `resume` when the root context acts on a held request.
    fn release(&mut self, caller: Caller) -> bool {
        let resume = caller == Caller::Root && self.held;
        self.held = false;
        resume
    }

    fn hold(&mut self) -> Next {
        self.held = true;
        Next::Hold
    }

    /// The audit record of a decision (`next` allows or denies), with what is known by then.
    fn audit(&self, next: &Next) -> Option<Box<Audit>> {
        let denial = match next {
            Next::Deny(denied) => Some(&denied.denial),
            Next::Allow { .. } => None,
            Next::Serve(..) | Next::Hold | Next::Continue { .. } => return None,
        };
        let identity = match &self.token {
            TokenCheck::Verified(identity) => Some(identity),
            TokenCheck::Unchecked | TokenCheck::Waiting(_) => None,
        };
        let granted = identity.map_or(&[][..], |i| i.scopes.as_slice());
        let mut audit = Audit::new(
            audit::decision(denial, granted),
            Some(self.auth.resource),
            identity.cloned(),
        );
        match &self.calls {
            Calls::Known(calls) => audit.add_calls(calls),
            Calls::AwaitingBody(McpHeaders {
                method: Some(method),
                name,
            }) => audit.add_call(method, name.as_deref()),
            Calls::AwaitingBody(_) | Calls::NotNeeded | Calls::Rejected(_) => {}
        }
        Some(Box::new(audit))
    }

    /// A denial as a step, with its audit record.
    fn deny(&self, denial: Denial) -> Step {
        let next = Next::Deny(self.denied(denial));
        Step {
            audit: self.audit(&next),
            ..Step::only(next)
        }
    }
}

/// Who moves a request forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// One of the request's own callbacks: the action it returns takes effect.
    Callback,
    /// The root context (keys arrived): a held request must be resumed explicitly.
    Root,
}

/// What the glue does after a step, besides the header edits and counters of [`Step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Answer with this response (metadata, preflight) and count it.
    Serve(LocalResponse, Counter),
    /// Answer with this denial (log, count, send).
    Deny(Denied),
    /// Return `Pause`: the host keeps holding the request.
    Hold,
    /// Let the request (or, before its body, its headers) go on; `resume`: it is held and the
    /// root context acts, so resume it.
    Continue {
        /// Call `resume_http_request`.
        resume: bool,
    },
    /// The request is allowed: count it and let it go on (see `Continue`).
    Allow {
        /// Call `resume_http_request`.
        resume: bool,
    },
}

impl Next {
    /// The action a callback returns.
    pub fn action(&self) -> Action {
        match self {
            Next::Continue { .. } | Next::Allow { .. } => Action::Continue,
            Next::Serve(..) | Next::Deny(_) | Next::Hold => Action::Pause,
        }
    }
}

/// The upstream header edits for a just-verified identity (see [`front::upstream_edits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHeaders {
    identity: Rc<Identity>,
    sent: Vec<u8>,
}

impl UpstreamHeaders {
    /// The edits, in order.
    pub fn edits<'a>(&'a self, cfg: &'a Config) -> impl Iterator<Item = HeaderEdit<'a>> + 'a {
        front::upstream_edits(cfg, &self.identity, &self.sent)
    }
}

/// Everything one decision asks of the glue, in this order: record the audit fields (before the
/// request can complete), count the cache lookup, apply the header edits (before anything goes
/// on: Envoy forwards the headers as soon as the header phase continues), then [`Next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// For the access log, when the request is decided (allowed or denied). Boxed: most steps
    /// have none, and steps move by value.
    pub audit: Option<Box<Audit>>,
    /// Whether the token cache answered.
    pub cache: CacheLookup,
    /// Header edits to apply now.
    pub upstream_headers: Option<UpstreamHeaders>,
    /// Then.
    pub next: Next,
}

impl Step {
    fn only(next: Next) -> Step {
        Step {
            audit: None,
            cache: CacheLookup::Skipped,
            upstream_headers: None,
            next,
        }
    }
}

/// What a body callback needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyStep {
    /// Decided without the body bytes.
    Done(Step),
    /// The body is complete: read it and pass it to [`Runtime::whole_body`].
    ReadBody,
}

/// What the trailers callback needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailersStep {
    /// Return this action.
    Done(Action),
    /// Trailers end the request, so the body the host holds is the whole body: measure it (up
    /// to `limit` bytes is enough to tell "too large") and decide as on its last body callback.
    /// Answering `Continue` instead would let the host forward a held, unchecked body.
    MeasureBody {
        /// Read at most this many bytes.
        limit: usize,
    },
}

/// A request waiting for keys, as the root context sees it.
#[derive(Debug)]
pub struct Waiter {
    /// The request.
    pub request: SharedRequest,
    /// For which issuer, why, until when.
    pub wait: KeyWait,
}

impl Waiter {
    /// The deadline passed: the denial to answer with (the request is then answered), or `None`
    /// if the request was decided meanwhile.
    pub fn deadline_passed(&self) -> Option<Step> {
        let mut state = self.request.try_borrow_mut().ok()?;
        let RequestState::Checking(checks) = &*state else {
            return None;
        };
        let step = checks.deny(self.wait.reason.denial());
        *state = RequestState::Answered;
        Some(step)
    }
}

/// What one configured plugin instance shares between its root and HTTP contexts.
#[derive(Debug)]
pub struct Runtime {
    /// The configuration.
    pub cfg: Rc<Config>,
    /// Verified tokens.
    pub cache: TokenCache,
    /// The keys of each configured issuer, by index.
    pub issuers: Vec<IssuerKeys>,
    /// Requests waiting for keys, by context id.
    waiters: BTreeMap<u32, Waiter>,
}

impl Runtime {
    /// The state after configuration: inline keys ready, remote ones awaiting their first fetch.
    pub fn new(cfg: Config) -> Self {
        let issuers = cfg
            .issuers
            .iter()
            .map(|i| IssuerKeys::new(&i.jwks))
            .collect();
        let cache = front::token_cache(&cfg);
        Runtime {
            cfg: Rc::new(cfg),
            cache,
            issuers,
            waiters: BTreeMap::new(),
        }
    }

    /// The request's headers arrived; `end_of_stream`: no body follows.
    pub fn request_headers(
        &mut self,
        store: &dyn SharedStore,
        id: u32,
        request: &SharedRequest,
        seen: SeenHeaders<'_>,
        end_of_stream: bool,
        now_ms: Clock<'_>,
    ) -> Step {
        let decision = front::on_headers(&self.cfg, &seen.head());
        let pending = match decision {
            HeadDecision::Serve(resp, counter) => {
                set(request, RequestState::Answered);
                return Step::only(Next::Serve(resp, counter));
            }
            HeadDecision::Pass => {
                set(request, RequestState::Forwarded { cors_origin: None });
                return Step::only(Next::Continue { resume: false });
            }
            HeadDecision::Deny(denied) => {
                set(request, RequestState::Answered);
                let audit = Audit::new(
                    audit::decision(Some(&denied.denial), &[]),
                    denied.resource,
                    None,
                );
                return Step {
                    audit: Some(Box::new(audit)),
                    ..Step::only(Next::Deny(denied))
                };
            }
            HeadDecision::Authenticate(pending) => pending,
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
        set(
            request,
            RequestState::Checking(Box::new(Checks {
                auth: pending,
                token: TokenCheck::Unchecked,
                calls,
                held: false,
                sent_identity: seen.identity,
            })),
        );
        self.advance(store, id, request, Caller::Callback, now_ms)
    }

    /// A body callback: `body_size` bytes are held so far.
    pub fn request_body(
        &mut self,
        id: u32,
        request: &SharedRequest,
        body_size: usize,
        end_of_stream: bool,
    ) -> BodyStep {
        let Ok(mut state) = request.try_borrow_mut() else {
            return BodyStep::Done(Step::only(Next::Hold));
        };
        let checks = match &mut *state {
            RequestState::Checking(checks) => checks,
            RequestState::Forwarded { .. } | RequestState::Start => {
                return BodyStep::Done(Step::only(Next::Continue { resume: false }));
            }
            RequestState::Answered => return BodyStep::Done(Step::only(Next::Hold)),
        };
        if !matches!(checks.calls, Calls::AwaitingBody(_)) {
            // Body of a request waiting for keys only: hold it until the decision.
            return BodyStep::Done(Step::only(checks.hold()));
        }
        if body_size > self.cfg.max_body_bytes {
            let step = checks.deny(Denial::BodyTooLarge);
            self.waiters.remove(&id);
            *state = RequestState::Answered;
            return BodyStep::Done(step);
        }
        if !end_of_stream {
            return BodyStep::Done(Step::only(checks.hold()));
        }
        BodyStep::ReadBody
    }

    /// The whole body, read after [`BodyStep::ReadBody`].
    pub fn whole_body(
        &mut self,
        store: &dyn SharedStore,
        id: u32,
        request: &SharedRequest,
        body: &[u8],
        now_ms: Clock<'_>,
    ) -> Step {
        {
            let Ok(mut state) = request.try_borrow_mut() else {
                return Step::only(Next::Hold);
            };
            let RequestState::Checking(checks) = &mut *state else {
                return Step::only(Next::Hold);
            };
            if let Calls::AwaitingBody(headers) = &checks.calls {
                // A malformed body is answered after the token check (at once if it is done).
                checks.calls = match front::mcp_calls(headers, body) {
                    Ok(calls) => Calls::Known(calls),
                    Err(denial) => Calls::Rejected(denial),
                };
            }
            if self.waiters.contains_key(&id) {
                // Still waiting for keys; the root context resumes the request.
                return Step::only(checks.hold());
            }
        }
        self.advance(store, id, request, Caller::Callback, now_ms)
    }

    /// The trailers callback.
    pub fn request_trailers(&self, request: &SharedRequest) -> TrailersStep {
        let Ok(state) = request.try_borrow() else {
            return TrailersStep::Done(Action::Pause);
        };
        match &*state {
            RequestState::Forwarded { .. } | RequestState::Start => {
                TrailersStep::Done(Action::Continue)
            }
            RequestState::Answered => TrailersStep::Done(Action::Pause),
            RequestState::Checking(_) => TrailersStep::MeasureBody {
                limit: self.cfg.max_body_bytes.saturating_add(1),
            },
        }
    }

    /// Moves a request forward as far as what is known allows: checks the token (maybe
    /// waiting for keys), then the scopes of the calls known so far.
    pub fn advance(
        &mut self,
        store: &dyn SharedStore,
        id: u32,
        request: &SharedRequest,
        caller: Caller,
        now_ms: Clock<'_>,
    ) -> Step {
        let Ok(mut state) = request.try_borrow_mut() else {
            return Step::only(Next::Hold);
        };
        let RequestState::Checking(checks) = &mut *state else {
            return Step::only(Next::Continue { resume: false });
        };
        let mut step = self.check(store, id, request, checks, caller, now_ms);
        // Nothing reads the record when the properties are off: an allowed request then builds
        // none (denials still do, on their slower path).
        if self.cfg.access_log_properties {
            step.audit = checks.audit(&step.next);
        }
        state.conclude(&step.next);
        step
    }

    fn check(
        &mut self,
        store: &dyn SharedStore,
        id: u32,
        request: &SharedRequest,
        checks: &mut Checks,
        caller: Caller,
        now_ms: Clock<'_>,
    ) -> Step {
        let mut step = Step::only(Next::Hold);
        let identity = match &checks.token {
            TokenCheck::Verified(identity) => Rc::clone(identity),
            TokenCheck::Unchecked | TokenCheck::Waiting(_) => {
                let now_ms = now_ms();
                let Authenticated { outcome, cache } = {
                    let cfg = Rc::clone(&self.cfg);
                    let issuers = &self.issuers;
                    let keys = |i: usize| -> Option<&KeySet> {
                        issuers.get(i).and_then(|k| k.key_set(now_ms))
                    };
                    front::authenticate(
                        &cfg,
                        &mut self.cache,
                        store,
                        checks.auth.resource,
                        &checks.auth.token,
                        &keys,
                        now_ms / 1000,
                    )
                };
                step.cache = cache;
                match outcome {
                    TokenOutcome::Verified(identity) => {
                        checks.token = TokenCheck::Verified(Rc::clone(&identity));
                        step.upstream_headers = Some(UpstreamHeaders {
                            identity: Rc::clone(&identity),
                            sent: mem::take(&mut checks.sent_identity),
                        });
                        identity
                    }
                    TokenOutcome::Denied(denial) => {
                        step.next = Next::Deny(checks.denied(denial));
                        return step;
                    }
                    TokenOutcome::AwaitKeys { issuer } => {
                        // Woken by a fetch that brought no keys: the first deadline stands.
                        let deadline_ms = match checks.token {
                            TokenCheck::Waiting(wait) => wait.deadline_ms,
                            _ => self.wait_deadline(now_ms),
                        };
                        let wait = KeyWait {
                            issuer,
                            reason: WaitReason::FirstKeys,
                            deadline_ms,
                        };
                        step.next = self.wait(id, request, checks, wait);
                        return step;
                    }
                    TokenOutcome::UnknownKid { issuer } => {
                        step.next = self.unknown_kid(id, request, checks, issuer, now_ms);
                        return step;
                    }
                }
            }
        };
        step.next = self.authorize(checks, &identity, caller);
        step
    }

    /// The scope check of what is known of the calls, once the token is valid.
    fn authorize(&self, checks: &mut Checks, identity: &Identity, caller: Caller) -> Next {
        let resource = checks.auth.resource;
        let calls = match &checks.calls {
            Calls::AwaitingBody(headers) => {
                // Check what is known before the headers go on: the base scopes, and the tool
                // named by Mcp-Method/Mcp-Name when the client sent them. The body is checked
                // when complete; its callbacks hold it (paused) until the decision.
                let announced = front::calls_from_headers(headers);
                if let Err(denial) = front::authorize(&self.cfg, resource, identity, &announced) {
                    return Next::Deny(checks.denied(denial));
                }
                return self.headers_before_body(checks, caller);
            }
            Calls::Rejected(denial) => return Next::Deny(checks.denied(denial.clone())),
            Calls::NotNeeded => &[][..],
            Calls::Known(calls) => calls.as_slice(),
        };
        match front::authorize(&self.cfg, resource, identity, calls) {
            Ok(()) => Next::Allow {
                resume: checks.release(caller),
            },
            Err(denial) => Next::Deny(checks.denied(denial)),
        }
    }

    /// The headers of a request whose body is still to be checked, once everything the headers
    /// tell is allowed. A host that delivers the body while it holds paused headers
    /// (`hold_headers_for_body`) keeps holding them: a body callback's `Continue` later releases
    /// headers and body together, once the body is allowed, and a denial reaches nothing
    /// upstream. Resuming here (keys that arrive before the body is complete) would release the
    /// headers and the part of the body received so far, unchecked. Other hosts deliver the
    /// body only after the header phase continues, so the headers go on now.
    fn headers_before_body(&self, checks: &mut Checks, caller: Caller) -> Next {
        if self.cfg.hold_headers_for_body {
            return checks.hold();
        }
        Next::Continue {
            resume: checks.release(caller),
        }
    }

    /// The token's `kid` is not among its issuer's keys. It may wait for one refetch of them
    /// (the key may be new), unless it already did or refetches are rate-limited.
    fn unknown_kid(
        &mut self,
        id: u32,
        request: &SharedRequest,
        checks: &mut Checks,
        issuer: usize,
        now_ms: u64,
    ) -> Next {
        let refetched = matches!(
            checks.token,
            TokenCheck::Waiting(KeyWait {
                reason: WaitReason::KidRefetch,
                ..
            })
        );
        let allowed = self
            .issuers
            .get(issuer)
            .is_some_and(|k| k.kid_refetch_allowed(now_ms));
        if refetched || !allowed {
            return Next::Deny(checks.denied(WaitReason::KidRefetch.denial()));
        }
        if let Some(keys) = self.issuers.get_mut(issuer) {
            keys.request_kid_refetch(now_ms);
        }
        let wait = KeyWait {
            issuer,
            reason: WaitReason::KidRefetch,
            deadline_ms: self.wait_deadline(now_ms),
        };
        self.wait(id, request, checks, wait)
    }

    fn wait_deadline(&self, now_ms: u64) -> u64 {
        let timeout = u64::try_from(self.cfg.key_wait_timeout.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_add(timeout)
    }

    /// Registers the request as waiting and holds it.
    fn wait(
        &mut self,
        id: u32,
        request: &SharedRequest,
        checks: &mut Checks,
        wait: KeyWait,
    ) -> Next {
        checks.token = TokenCheck::Waiting(wait);
        self.waiters.insert(
            id,
            Waiter {
                request: Rc::clone(request),
                wait,
            },
        );
        checks.hold()
    }

    /// The requests waiting for `issuer`'s keys, no longer waiting: a fetch of them ended, so
    /// each is [advanced](Runtime::advance) again from the root context.
    pub fn take_waiters_of(&mut self, issuer: usize) -> Vec<(u32, Waiter)> {
        self.take_waiters(&|w| w.issuer == issuer)
    }

    /// The requests whose wait ended at `now_ms` without keys (see [`Waiter::deadline_passed`]).
    pub fn take_expired(&mut self, now_ms: u64) -> Vec<(u32, Waiter)> {
        self.take_waiters(&|w| w.deadline_ms <= now_ms)
    }

    fn take_waiters(&mut self, which: &dyn Fn(&KeyWait) -> bool) -> Vec<(u32, Waiter)> {
        let ids: Vec<u32> = self
            .waiters
            .iter()
            .filter(|(_, w)| which(&w.wait))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.waiters.remove(&id).map(|w| (id, w)))
            .collect()
    }

    /// The request's context is gone.
    pub fn forget(&mut self, id: u32) {
        self.waiters.remove(&id);
    }
}

fn set(request: &SharedRequest, state: RequestState) {
    if let Ok(mut current) = request.try_borrow_mut() {
        *current = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::MemStore;
    use crate::config::tests::{demo_json, parse};
    use crate::front::HeaderEdit;
    use mcp_auth_test_support::{TestKey, ed_key};
    use serde_json::{Value, json};

    const NOW_MS: u64 = 1_800_000_000_000;
    const WAIT_MS: u64 = 5_000;
    const ADMIN_CALL: &[u8] =
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_report"}}"#;
    const TOOL_CALL: &[u8] =
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;

    /// The demo configuration (remote JWKS, `admin_*` tools need `mcp:admin`) and a shared-data
    /// store.
    struct World {
        rt: Runtime,
        store: MemStore,
        next_id: u32,
    }

    impl World {
        fn new() -> Self {
            Self::with(demo_json())
        }

        fn with(cfg: Value) -> Self {
            World {
                rt: Runtime::new(parse(&cfg).expect("valid")),
                store: MemStore::default(),
                next_id: 1,
            }
        }

        /// A fetch of issuer 0's keys answered at `at_ms` with these keys.
        fn keys_arrive(&mut self, keys: &[&TestKey], at_ms: u64) {
            let jwks = json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()});
            let issuer = &mut self.rt.issuers[0];
            issuer.fetch_started(7, at_ms);
            let report = issuer.fetch_answered(Some(b"200"), jwks.to_string().as_bytes(), at_ms);
            assert!(matches!(report, crate::keys::FetchReport::Loaded { .. }));
        }

        fn fetch_fails(&mut self, at_ms: u64) {
            let issuer = &mut self.rt.issuers[0];
            issuer.fetch_started(8, at_ms);
            issuer.fetch_answered(None, b"", at_ms);
        }

        /// A new request whose headers arrive at `at_ms`.
        fn request(
            &mut self,
            headers: &[(&str, &str)],
            end_of_stream: bool,
            at_ms: u64,
        ) -> (u32, SharedRequest, Step) {
            let id = self.next_id;
            self.next_id += 1;
            let request: SharedRequest = Rc::new(RefCell::new(RequestState::Start));
            let pairs: Vec<(&[u8], &[u8])> = headers
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                .collect();
            let seen = SeenHeaders::gather(&pairs, &self.rt.cfg.identity_headers);
            let step =
                self.rt
                    .request_headers(&self.store, id, &request, seen, end_of_stream, &|| at_ms);
            (id, request, step)
        }

        /// The root context wakes issuer 0's waiters at `at_ms`.
        fn wake(&mut self, at_ms: u64) -> Vec<Step> {
            self.rt
                .take_waiters_of(0)
                .into_iter()
                .map(|(id, w)| {
                    self.rt
                        .advance(&self.store, id, &w.request, Caller::Root, &|| at_ms)
                })
                .collect()
        }

        /// The whole body arrives.
        fn body(&mut self, id: u32, request: &SharedRequest, body: &[u8], at_ms: u64) -> Step {
            assert_eq!(
                self.rt.request_body(id, request, body.len(), true),
                BodyStep::ReadBody
            );
            self.rt
                .whole_body(&self.store, id, request, body, &|| at_ms)
        }
    }

    fn claims() -> Value {
        let now = NOW_MS / 1000;
        json!({"iss": "http://localhost:9000", "sub": "alice", "aud": "http://localhost:10000/mcp",
            "client_id": "c1", "scope": "mcp:tools", "iat": now, "exp": now + 600})
    }

    fn bearer(key: &TestKey) -> String {
        format!("Bearer {}", key.jwt(&claims()))
    }

    fn get(auth: &str) -> Vec<(&str, &str)> {
        vec![
            (":method", "GET"),
            (":path", "/mcp"),
            ("authorization", auth),
        ]
    }

    fn post(auth: &str) -> Vec<(&str, &str)> {
        vec![
            (":method", "POST"),
            (":path", "/mcp"),
            ("authorization", auth),
        ]
    }

    fn denial(step: &Step) -> &Denial {
        match &step.next {
            Next::Deny(d) => &d.denial,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    fn is_answered(request: &SharedRequest) -> bool {
        matches!(*request.borrow(), RequestState::Answered)
    }

    #[test]
    fn a_valid_token_edits_the_upstream_headers_then_the_request_is_allowed() {
        let mut w = World::new();
        let key = ed_key("k1");
        w.keys_arrive(&[&key], NOW_MS);
        let auth = bearer(&key);
        let mut headers = get(&auth);
        headers.push(("x-mcp-subject", "mallory"));
        headers.push(("origin", "http://localhost:6274"));
        let (_, request, step) = w.request(&headers, true, NOW_MS);
        assert_eq!(step.cache, CacheLookup::Miss);
        assert_eq!(step.next, Next::Allow { resume: false });
        assert_eq!(step.next.action(), Action::Continue);
        let edits = step
            .upstream_headers
            .as_ref()
            .expect("identity headers")
            .edits(&w.rt.cfg)
            .collect::<Vec<_>>();
        assert_eq!(
            edits,
            vec![
                HeaderEdit::Remove("authorization"),
                HeaderEdit::Add("x-mcp-client-id", "c1"),
                HeaderEdit::Add("x-mcp-scope", "mcp:tools"),
                HeaderEdit::Replace("x-mcp-subject", "alice"),
            ]
        );
        assert_eq!(
            request.borrow().response_cors_origin(),
            Some("http://localhost:6274"),
            "the upstream's response gets CORS headers for the allowed origin"
        );
        let audit = step.audit.as_ref().expect("decided");
        assert_eq!(audit.decision, "allowed");
        assert_eq!(
            audit.identity.as_ref().map(|i| i.subject.as_deref()),
            Some(Some("alice"))
        );
        let (_, _, again) = w.request(&get(&bearer(&key)), true, NOW_MS + 1);
        assert_eq!(again.cache, CacheLookup::Hit);
        assert_eq!(again.next, Next::Allow { resume: false });
    }

    #[test]
    fn without_access_log_properties_an_allowed_request_builds_no_audit_record() {
        let mut cfg = demo_json();
        cfg["access_log_properties"] = json!(false);
        let mut w = World::with(cfg);
        let key = ed_key("k1");
        w.keys_arrive(&[&key], NOW_MS);
        for expected in [CacheLookup::Miss, CacheLookup::Hit] {
            let (_, _, step) = w.request(&get(&bearer(&key)), true, NOW_MS);
            assert_eq!(
                (step.cache, &step.next),
                (expected, &Next::Allow { resume: false })
            );
            assert!(step.upstream_headers.is_some());
            assert_eq!(step.audit, None);
        }
    }

    #[test]
    fn answers_from_the_headers_alone_check_no_token() {
        let mut w = World::new();
        let (_, metadata, step) = w.request(
            &[
                (":method", "GET"),
                (":path", "/.well-known/oauth-protected-resource/mcp"),
            ],
            true,
            NOW_MS,
        );
        assert!(matches!(
            step.next,
            Next::Serve(ref r, Counter::MetadataServed) if r.status == 200
        ));
        assert!(is_answered(&metadata));
        let (_, missing, step) = w.request(&[(":method", "GET"), (":path", "/mcp")], true, NOW_MS);
        assert_eq!(denial(&step), &Denial::MissingToken);
        assert_eq!(step.cache, CacheLookup::Skipped);
        assert_eq!(
            step.audit
                .as_ref()
                .map(|a| (a.decision.as_ref(), a.resource)),
            Some(("missing_token", Some(0)))
        );
        assert!(is_answered(&missing));
        let mut pass = demo_json();
        pass["unmatched_paths"] = json!("pass");
        let mut w = World::with(pass);
        let (_, other, step) = w.request(&[(":method", "GET"), (":path", "/other")], true, NOW_MS);
        assert_eq!(step.next, Next::Continue { resume: false });
        assert!(matches!(
            *other.borrow(),
            RequestState::Forwarded { cors_origin: None }
        ));
    }

    #[test]
    fn a_request_waits_for_its_issuers_first_keys_and_is_resumed_when_they_arrive() {
        let mut w = World::new();
        let key = ed_key("k1");
        let (_, request, step) = w.request(&get(&bearer(&key)), true, NOW_MS);
        assert_eq!(step.next, Next::Hold);
        assert_eq!(step.next.action(), Action::Pause);
        assert!(step.upstream_headers.is_none());
        assert_eq!(step.audit, None, "not decided yet");
        w.keys_arrive(&[&key], NOW_MS + 300);
        let woken = w.wake(NOW_MS + 300);
        assert_eq!(woken.len(), 1);
        assert_eq!(
            woken[0].next,
            Next::Allow { resume: true },
            "held by the host, so resumed from the root context"
        );
        assert!(woken[0].upstream_headers.is_some());
        assert!(matches!(*request.borrow(), RequestState::Forwarded { .. }));
        assert!(w.wake(NOW_MS + 400).is_empty(), "no longer waiting");
    }

    #[test]
    fn without_keys_by_the_deadline_the_answer_is_503() {
        let mut w = World::new();
        let (_, request, _) = w.request(&get(&bearer(&ed_key("k1"))), true, NOW_MS);
        w.fetch_fails(NOW_MS + 1_000);
        let woken = w.wake(NOW_MS + 1_000);
        assert_eq!(woken[0].next, Next::Hold, "a failed fetch brings no keys");
        assert!(
            w.rt.take_expired(NOW_MS + WAIT_MS - 1).is_empty(),
            "waking keeps the first deadline"
        );
        let expired = w.rt.take_expired(NOW_MS + WAIT_MS);
        assert_eq!(expired.len(), 1);
        let step = expired[0].1.deadline_passed().expect("still checking");
        assert_eq!(denial(&step), &Denial::KeysUnavailable);
        let Next::Deny(denied) = &step.next else {
            unreachable!()
        };
        assert_eq!(denied.response(&w.rt.cfg).status, 503);
        assert_eq!(
            step.audit.map(|a| a.decision),
            Some("keys_unavailable".into())
        );
        assert!(is_answered(&request));
        assert_eq!(expired[0].1.deadline_passed(), None, "answered once");
    }

    #[test]
    fn an_unknown_kid_waits_for_one_refetch_that_may_bring_the_key() {
        let mut w = World::new();
        let (old, new) = (ed_key("k1"), ed_key("k2"));
        w.keys_arrive(&[&old], NOW_MS - 60_000);
        let (_, _, step) = w.request(&get(&bearer(&new)), true, NOW_MS);
        assert_eq!(step.next, Next::Hold);
        assert!(
            w.rt.issuers[0].fetch_due(NOW_MS),
            "the refetch is due, for the root context's next tick"
        );
        w.keys_arrive(&[&old, &new], NOW_MS + 400);
        let woken = w.wake(NOW_MS + 400);
        assert_eq!(woken[0].next, Next::Allow { resume: true });
    }

    #[test]
    fn a_kid_still_unknown_after_the_refetch_is_401() {
        let mut w = World::new();
        let old = ed_key("k1");
        w.keys_arrive(&[&old], NOW_MS - 60_000);
        let (_, request, _) = w.request(&get(&bearer(&ed_key("k2"))), true, NOW_MS);
        w.keys_arrive(&[&old], NOW_MS + 400);
        let woken = w.wake(NOW_MS + 400);
        assert_eq!(
            denial(&woken[0]),
            &Denial::InvalidToken("unknown key id"),
            "one refetch per request"
        );
        assert!(is_answered(&request));
    }

    #[test]
    fn a_refetch_within_the_minimum_interval_is_refused_at_once() {
        let mut w = World::new();
        let old = ed_key("k1");
        w.keys_arrive(&[&old], NOW_MS - 60_000);
        w.request(&get(&bearer(&ed_key("k2"))), true, NOW_MS);
        w.keys_arrive(&[&old], NOW_MS + 400);
        w.wake(NOW_MS + 400);
        let (_, _, step) = w.request(&get(&bearer(&ed_key("k3"))), true, NOW_MS + 1_000);
        assert_eq!(denial(&step), &Denial::InvalidToken("unknown key id"));
        let (_, _, later) = w.request(&get(&bearer(&ed_key("k3"))), true, NOW_MS + 30_000);
        assert_eq!(later.next, Next::Hold, "allowed again after 30 s");
    }

    #[test]
    fn a_refetch_that_never_ends_answers_401_at_the_deadline() {
        let mut w = World::new();
        w.keys_arrive(&[&ed_key("k1")], NOW_MS - 60_000);
        w.request(&get(&bearer(&ed_key("k2"))), true, NOW_MS);
        let expired = w.rt.take_expired(NOW_MS + WAIT_MS);
        let step = expired[0].1.deadline_passed().expect("still checking");
        assert_eq!(denial(&step), &Denial::InvalidToken("unknown key id"));
        let Next::Deny(denied) = &step.next else {
            unreachable!()
        };
        assert_eq!(denied.response(&w.rt.cfg).status, 401);
    }

    #[test]
    fn a_request_whose_context_is_gone_no_longer_waits() {
        let mut w = World::new();
        let (id, _, _) = w.request(&get(&bearer(&ed_key("k1"))), true, NOW_MS);
        w.rt.forget(id);
        assert!(w.rt.take_expired(u64::MAX).is_empty());
    }

    #[test]
    fn on_a_rule_bearing_route_the_headers_go_on_and_the_body_decides() {
        let mut w = World::new();
        let key = ed_key("k1");
        w.keys_arrive(&[&key], NOW_MS);
        let (id, request, step) = w.request(&post(&bearer(&key)), false, NOW_MS);
        assert_eq!(step.next, Next::Continue { resume: false });
        assert!(step.upstream_headers.is_some(), "edited before they go on");
        assert_eq!(
            w.rt.request_body(id, &request, 10, false),
            BodyStep::Done(Step::only(Next::Hold)),
            "held until complete"
        );
        let step = w.body(id, &request, ADMIN_CALL, NOW_MS);
        assert_eq!(
            denial(&step),
            &Denial::InsufficientScope(vec!["mcp:tools".into(), "mcp:admin".into()])
        );
        let audit = step.audit.as_ref().expect("decided");
        assert_eq!(audit.decision, "insufficient_scope: mcp:admin");
        assert_eq!(
            (audit.mcp_method.as_str(), audit.mcp_name.as_str()),
            ("tools/call", "admin_report"),
            "the tool call of the body"
        );
        assert!(
            audit.identity.is_some(),
            "denied after the token was verified"
        );
        assert!(
            step.upstream_headers.is_none(),
            "edited once, in the header phase"
        );
        let (id, request, _) = w.request(&post(&bearer(&key)), false, NOW_MS);
        assert_eq!(
            w.body(id, &request, TOOL_CALL, NOW_MS).next,
            Next::Allow { resume: false }
        );
        assert_eq!(
            w.rt.request_body(id, &request, 10, true),
            BodyStep::Done(Step::only(Next::Continue { resume: false })),
            "a forwarded request's later data goes on"
        );
    }

    /// The demo configuration on a host that holds paused headers while the body comes.
    fn holding() -> World {
        let mut cfg = demo_json();
        cfg["hold_headers_for_body"] = json!(true);
        World::with(cfg)
    }

    #[test]
    fn with_held_headers_a_rule_bearing_post_pauses_until_its_body_decides() {
        let mut w = holding();
        let key = ed_key("k1");
        w.keys_arrive(&[&key], NOW_MS);
        let (id, request, step) = w.request(&post(&bearer(&key)), false, NOW_MS);
        assert_eq!(step.next, Next::Hold, "the headers wait for the body");
        assert_eq!(step.next.action(), Action::Pause);
        assert!(
            step.upstream_headers.is_some(),
            "edited while they are held"
        );
        assert_eq!(step.audit, None, "not decided yet");
        assert_eq!(
            w.rt.request_body(id, &request, 10, false),
            BodyStep::Done(Step::only(Next::Hold)),
            "a first chunk is held with the headers"
        );
        let denied = w.body(id, &request, ADMIN_CALL, NOW_MS);
        assert_eq!(
            denial(&denied),
            &Denial::InsufficientScope(vec!["mcp:tools".into(), "mcp:admin".into()])
        );
        let (id, request, _) = w.request(&post(&bearer(&key)), false, NOW_MS);
        let allowed = w.body(id, &request, TOOL_CALL, NOW_MS);
        assert_eq!(
            allowed.next,
            Next::Allow { resume: false },
            "the body callback's Continue releases headers and body together"
        );
        assert_eq!(allowed.next.action(), Action::Continue);
    }

    #[test]
    fn with_held_headers_requests_that_need_no_body_are_not_paused() {
        let mut w = holding();
        let key = ed_key("k1");
        w.keys_arrive(&[&key], NOW_MS);
        let auth = bearer(&key);
        let delete = vec![
            (":method", "DELETE"),
            (":path", "/mcp"),
            ("authorization", auth.as_str()),
        ];
        for (what, headers, end_of_stream) in [
            ("GET stream", get(&auth), true),
            ("GET with a body", get(&auth), false),
            ("DELETE", delete, false),
        ] {
            let (_, _, step) = w.request(&headers, end_of_stream, NOW_MS);
            assert_eq!(step.next, Next::Allow { resume: false }, "{what}");
        }
        let (_, _, no_body) = w.request(&post(&auth), true, NOW_MS);
        assert_eq!(
            denial(&no_body),
            &Denial::BadMcpRequest("missing JSON-RPC body"),
            "headers that end the request are decided at once"
        );
        let mut cfg = demo_json();
        cfg["hold_headers_for_body"] = json!(true);
        cfg["resources"][0]["tool_scopes"] = json!([]);
        let mut w = World::with(cfg);
        w.keys_arrive(&[&key], NOW_MS);
        let (_, _, step) = w.request(&post(&auth), false, NOW_MS);
        assert_eq!(
            step.next,
            Next::Allow { resume: false },
            "a route without tool rules never reads the body"
        );
    }

    #[test]
    fn with_held_headers_keys_that_arrive_before_the_whole_body_do_not_release_it() {
        let key = ed_key("k1");
        for hold in [false, true] {
            let mut cfg = demo_json();
            cfg["hold_headers_for_body"] = json!(hold);
            let mut w = World::with(cfg);
            let (id, request, step) = w.request(&post(&bearer(&key)), false, NOW_MS);
            assert_eq!(step.next, Next::Hold, "waiting for keys");
            w.keys_arrive(&[&key], NOW_MS + 300);
            let woken = w.wake(NOW_MS + 300);
            assert!(woken[0].upstream_headers.is_some());
            if hold {
                assert_eq!(
                    woken[0].next,
                    Next::Hold,
                    "resuming would release the part of the body the host holds"
                );
                assert_eq!(
                    w.body(id, &request, TOOL_CALL, NOW_MS + 400).next,
                    Next::Allow { resume: false }
                );
            } else {
                assert_eq!(
                    woken[0].next,
                    Next::Continue { resume: true },
                    "the host delivers the body only once the headers go on"
                );
            }
        }
    }

    #[test]
    fn with_held_headers_a_body_complete_before_the_keys_is_decided_when_they_arrive() {
        let mut w = holding();
        let key = ed_key("k1");
        let (id, request, _) = w.request(&post(&bearer(&key)), false, NOW_MS);
        assert_eq!(
            w.rt.request_body(id, &request, 10, false),
            BodyStep::Done(Step::only(Next::Hold))
        );
        assert_eq!(
            w.body(id, &request, ADMIN_CALL, NOW_MS + 10).next,
            Next::Hold
        );
        w.keys_arrive(&[&key], NOW_MS + 300);
        let woken = w.wake(NOW_MS + 300);
        assert_eq!(
            denial(&woken[0]),
            &Denial::InsufficientScope(vec!["mcp:tools".into(), "mcp:admin".into()])
        );
        let (id, request, _) = w.request(&post(&bearer(&key)), false, NOW_MS + 400);
        assert_eq!(
            w.body(id, &request, TOOL_CALL, NOW_MS + 400).next,
            Next::Allow { resume: false }
        );
    }

    #[test]
    fn with_held_headers_a_body_over_the_limit_or_empty_is_answered_from_the_body_callback() {
        let mut w = holding();
        let key = ed_key("k1");
        w.keys_arrive(&[&key], NOW_MS);
        let (id, request, _) = w.request(&post(&bearer(&key)), false, NOW_MS);
        let BodyStep::Done(too_large) = w.rt.request_body(id, &request, 1024 * 1024 + 1, false)
        else {
            panic!("decided without reading");
        };
        assert_eq!(denial(&too_large), &Denial::BodyTooLarge);
        let (id, request, _) = w.request(&post(&bearer(&key)), false, NOW_MS);
        assert_eq!(
            denial(&w.body(id, &request, b"", NOW_MS)),
            &Denial::BadMcpRequest("missing JSON-RPC body"),
            "an empty last chunk ends a body that is not there"
        );
        let (_, held, _) = w.request(&post(&bearer(&key)), false, NOW_MS);
        assert_eq!(
            w.rt.request_trailers(&held),
            TrailersStep::MeasureBody {
                limit: 1024 * 1024 + 1
            },
            "trailers end the body: decided as on its last chunk"
        );
    }

    #[test]
    fn a_tool_announced_in_the_headers_is_authorized_before_the_body() {
        let mut w = World::new();
        let key = ed_key("k1");
        w.keys_arrive(&[&key], NOW_MS);
        let auth = bearer(&key);
        let mut headers = post(&auth);
        headers.push(("mcp-method", "tools/call"));
        headers.push(("mcp-name", "admin_report"));
        let (_, _, step) = w.request(&headers, false, NOW_MS);
        assert_eq!(
            denial(&step),
            &Denial::InsufficientScope(vec!["mcp:tools".into(), "mcp:admin".into()])
        );
    }

    #[test]
    fn headers_that_disagree_with_the_body_are_a_header_mismatch_carrying_its_id() {
        let mut w = World::new();
        let key = ed_key("k1");
        w.keys_arrive(&[&key], NOW_MS);
        let auth = bearer(&key);
        let mut headers = post(&auth);
        headers.push(("mcp-method", "tools/call"));
        headers.push(("mcp-name", "echo"));
        let (id, request, step) = w.request(&headers, false, NOW_MS);
        assert_eq!(step.next, Next::Continue { resume: false });
        let step = w.body(id, &request, ADMIN_CALL, NOW_MS);
        assert_eq!(
            denial(&step),
            &Denial::HeaderMismatch {
                description: "Mcp-Name header does not match the body",
                id: Some("1".into()),
            }
        );
        assert_eq!(
            step.audit.map(|a| a.decision),
            Some("bad_mcp_request: Mcp-Name header does not match the body".into())
        );
    }

    #[test]
    fn a_body_over_max_body_bytes_is_413() {
        let mut w = World::new();
        let key = ed_key("k1");
        w.keys_arrive(&[&key], NOW_MS);
        let (id, request, _) = w.request(&post(&bearer(&key)), false, NOW_MS);
        let BodyStep::Done(step) = w.rt.request_body(id, &request, 1024 * 1024 + 1, false) else {
            panic!("decided without reading");
        };
        assert_eq!(denial(&step), &Denial::BodyTooLarge);
        assert_eq!(
            step.audit.map(|a| a.decision),
            Some("body_too_large".into())
        );
        assert!(is_answered(&request));
    }

    #[test]
    fn a_body_that_arrives_while_waiting_for_keys_is_decided_after_them() {
        let mut w = World::new();
        let key = ed_key("k1");
        let (id, request, _) = w.request(&post(&bearer(&key)), false, NOW_MS);
        let step = w.body(id, &request, b"not json", NOW_MS + 10);
        assert_eq!(step.next, Next::Hold, "the token comes first");
        w.keys_arrive(&[&key], NOW_MS + 300);
        let woken = w.wake(NOW_MS + 300);
        assert_eq!(
            denial(&woken[0]),
            &Denial::BadMcpRequest("body is not a JSON-RPC message")
        );
    }

    #[test]
    fn a_malformed_mcp_request_is_answered_after_the_token_check() {
        let mut w = World::new();
        let key = ed_key("k1");
        w.keys_arrive(&[&key], NOW_MS);
        let valid = bearer(&key);
        for (auth, want) in [
            (
                "Bearer a.b.c",
                Denial::InvalidToken("token is not a JWS compact serialization"),
            ),
            (
                valid.as_str(),
                Denial::HeaderMismatch {
                    description: "invalid Mcp-Name header encoding",
                    id: None,
                },
            ),
        ] {
            let mut headers = post(auth);
            headers.push(("mcp-method", "tools/call"));
            headers.push(("mcp-name", "=?base64?!!!?="));
            let (_, _, step) = w.request(&headers, false, NOW_MS);
            assert_eq!(denial(&step), &want, "{auth}");
        }
        let (_, _, no_body) = w.request(&post(&bearer(&key)), true, NOW_MS);
        assert_eq!(
            denial(&no_body),
            &Denial::BadMcpRequest("missing JSON-RPC body"),
            "headers that end the request leave no body to read"
        );
    }

    #[test]
    fn trailers_measure_the_held_body_only_while_checking() {
        let mut w = World::new();
        let key = ed_key("k1");
        w.keys_arrive(&[&key], NOW_MS);
        let (_, checking, _) = w.request(&post(&bearer(&key)), false, NOW_MS);
        assert_eq!(
            w.rt.request_trailers(&checking),
            TrailersStep::MeasureBody {
                limit: 1024 * 1024 + 1
            }
        );
        let (_, forwarded, _) = w.request(&get(&bearer(&key)), true, NOW_MS);
        assert_eq!(
            w.rt.request_trailers(&forwarded),
            TrailersStep::Done(Action::Continue)
        );
        let (_, answered, _) = w.request(&get("Basic x"), true, NOW_MS);
        assert_eq!(
            w.rt.request_trailers(&answered),
            TrailersStep::Done(Action::Pause)
        );
    }
}
