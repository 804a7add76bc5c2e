//! proxy-wasm glue of one request (HTTP context): reads what the host has (headers, body),
//! hands it to [`crate::flow`] and carries out the returned [`Step`] ([`Plugin::apply`], also
//! used by the root context when it acts on a waiting request).

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use crate::flow::{BodyStep, Next, Runtime, SharedRequest, Step, TrailersStep};
use crate::front::{CacheLookup, Denied, HeaderEdit, SeenHeaders};
use crate::host::{self, HostStore};
use crate::response::{LocalResponse, json_error};
use crate::stats::Counter;

/// A configured plugin instance, shared by its root and HTTP contexts: the pure runtime and the
/// host's ids of the counters.
pub struct Plugin {
    /// Configuration, keys, token cache, waiting requests.
    pub runtime: Runtime,
    /// The host's id of each counter, by [`Counter::index`].
    pub metrics: Vec<Option<u32>>,
}

impl Plugin {
    /// Increments a counter.
    pub fn count(&self, c: Counter) {
        if let Some(Some(id)) = self.metrics.get(c.index()) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    /// Carries out a step in the current (effective) HTTP context; returns the callback's action.
    pub fn apply(&self, step: Step) -> Action {
        if let Some(audit) = &step.audit {
            audit.fields(&self.runtime.cfg, host::set_property);
        }
        match step.cache {
            CacheLookup::Hit => self.count(Counter::CacheHit),
            CacheLookup::Miss => self.count(Counter::CacheMiss),
            CacheLookup::Skipped => {}
        }
        if let Some(headers) = &step.upstream_headers {
            const MAP: MapType = MapType::HttpRequestHeaders;
            for edit in headers.edits(&self.runtime.cfg) {
                let _ = match edit {
                    HeaderEdit::Remove(name) => hostcalls::set_map_value(MAP, name, None),
                    HeaderEdit::Replace(name, value) => {
                        hostcalls::set_map_value(MAP, name, Some(value))
                    }
                    HeaderEdit::Add(name, value) => hostcalls::add_map_value(MAP, name, value),
                };
            }
        }
        let action = step.next.action();
        match step.next {
            Next::Serve(resp, counter) => {
                self.count(counter);
                send(&resp);
            }
            Next::Deny(denied) => self.deny(&denied),
            Next::Hold => {}
            Next::Continue { resume } => resume_if(resume),
            Next::Allow { resume } => {
                self.count(Counter::Allowed);
                resume_if(resume);
            }
        }
        action
    }

    fn deny(&self, denied: &Denied) {
        let cfg = &self.runtime.cfg;
        let resp = denied.response(cfg);
        let prefix = denied
            .resource
            .and_then(|i| cfg.resources.get(i))
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
        self.count(denied.denial.counter());
        send(&resp);
    }
}

/// Sends a local response in the current HTTP context.
fn send(resp: &LocalResponse) {
    let headers: Vec<(&str, &str)> = resp
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let _ = hostcalls::send_http_response(resp.status, headers, Some(&resp.body));
}

fn resume_if(resume: bool) {
    if resume {
        let _ = hostcalls::resume_http_request();
    }
}

/// One request.
pub struct Http {
    id: u32,
    /// `None` when the plugin has no valid configuration.
    plugin: Option<Rc<RefCell<Plugin>>>,
    request: SharedRequest,
}

impl Http {
    /// The context `id` of a plugin in the given state.
    pub fn new(id: u32, plugin: Option<Rc<RefCell<Plugin>>>, request: SharedRequest) -> Self {
        Http {
            id,
            plugin,
            request,
        }
    }

    fn unconfigured() -> Action {
        send(&json_error(
            503,
            "temporarily_unavailable",
            "authorization filter not configured",
        ));
        Action::Pause
    }

    fn on_headers(&mut self, plugin: &RefCell<Plugin>, end_of_stream: bool) -> Action {
        let Ok(mut plugin) = plugin.try_borrow_mut() else {
            return Self::unconfigured();
        };
        let map = host::header_map_bytes(MapType::HttpRequestHeaders);
        let pairs = host::parse_header_map(&map).unwrap_or_default();
        let seen = SeenHeaders::gather(&pairs, &plugin.runtime.cfg.identity_headers);
        let step = plugin.runtime.request_headers(
            &HostStore,
            self.id,
            &self.request,
            seen,
            end_of_stream,
            &host::now_ms,
        );
        plugin.apply(step)
    }

    fn on_body(
        &mut self,
        plugin: &RefCell<Plugin>,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let Ok(mut plugin) = plugin.try_borrow_mut() else {
            return Action::Pause;
        };
        let step =
            match plugin
                .runtime
                .request_body(self.id, &self.request, body_size, end_of_stream)
            {
                BodyStep::Done(step) => step,
                BodyStep::ReadBody => {
                    let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
                        .ok()
                        .flatten()
                        .unwrap_or_default();
                    plugin.runtime.whole_body(
                        &HostStore,
                        self.id,
                        &self.request,
                        &body,
                        &host::now_ms,
                    )
                }
            };
        plugin.apply(step)
    }

    fn on_trailers(&mut self, plugin: &RefCell<Plugin>) -> Action {
        let limit = {
            let Ok(plugin) = plugin.try_borrow() else {
                return Action::Pause;
            };
            match plugin.runtime.request_trailers(&self.request) {
                TrailersStep::Done(action) => return action,
                TrailersStep::MeasureBody { limit } => limit,
            }
        };
        let held = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, limit)
            .ok()
            .flatten()
            .map_or(0, |body| body.len());
        self.on_body(plugin, held, true)
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        match self.plugin.clone() {
            Some(plugin) => self.on_headers(&plugin, end_of_stream),
            None => Self::unconfigured(),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.plugin.clone() {
            Some(plugin) => self.on_body(&plugin, body_size, end_of_stream),
            None => Action::Pause,
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match self.plugin.clone() {
            Some(plugin) => self.on_trailers(&plugin),
            None => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(request) = self.request.try_borrow() else {
            return Action::Continue;
        };
        if let Some(origin) = request.response_cors_origin() {
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
        if let Some(Ok(mut plugin)) = self.plugin.as_ref().map(|p| p.try_borrow_mut()) {
            plugin.runtime.forget(self.id);
        }
    }
}
