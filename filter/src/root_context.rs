//! proxy-wasm glue of the root context: configuration, JWKS fetches, the tick, and waking or
//! ending the requests that wait for keys. The decisions are in [`crate::flow`], [`crate::keys`] and
//! [`crate::front`]; this file only moves data between them and the host.
//!
//! Root states: [`RootState::Unconfigured`] → [`RootState::Running`]. Per issuer, keys follow
//! [`crate::keys::KeyState`] (`AwaitingKeys` → `Ready`, unused past `max_stale`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::config::Config;
use crate::flow::{Caller, RequestState, Runtime};
use crate::host::{self, HostStore};
use crate::http_context::{Http, Plugin};
use crate::keys::FetchReport;
use crate::stats::Counter;

const TICK: Duration = Duration::from_millis(500);

impl Plugin {
    /// Dispatches issuer `issuer`'s fetch if one is due. Only called from root-context
    /// callbacks: the SDK routes the response to the context that was active at dispatch time.
    fn start_fetch_if_due(&mut self, issuer: usize, now_ms: u64) {
        let Some(keys) = self.runtime.issuers.get_mut(issuer) else {
            return;
        };
        let Some(remote) = keys.fetch_to_start(now_ms) else {
            return;
        };
        match hostcalls::dispatch_http_call(
            &remote.cluster,
            remote.request_headers().to_vec(),
            None,
            vec![],
            remote.fetch_timeout,
        ) {
            Ok(token) => keys.fetch_started(token, now_ms),
            Err(status) => {
                let cluster = remote.cluster.clone();
                keys.dispatch_failed(now_ms);
                self.count(Counter::JwksFetchFailed);
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "mcp-auth: jwks {} fetch failed: cannot call cluster {cluster} ({status:?})",
                        self.issuer_name(issuer)
                    ),
                );
            }
        }
    }

    fn issuer_name(&self, issuer: usize) -> &str {
        self.runtime
            .cfg
            .issuers
            .get(issuer)
            .map_or("", |i| i.issuer.as_str())
    }
}

/// Root context states.
enum RootState {
    /// Before a valid configuration (or after an invalid one).
    Unconfigured,
    /// Configured.
    Running(Rc<RefCell<Plugin>>),
}

struct Root {
    state: RootState,
}

impl Root {
    fn plugin(&self) -> Option<&Rc<RefCell<Plugin>>> {
        match &self.state {
            RootState::Running(plugin) => Some(plugin),
            RootState::Unconfigured => None,
        }
    }

    /// A fetch of `issuer`'s keys ended: its waiting requests are checked again.
    fn wake(plugin: &Rc<RefCell<Plugin>>, issuer: usize) {
        let Ok(mut plugin) = plugin.try_borrow_mut() else {
            return;
        };
        for (id, waiter) in plugin.runtime.take_waiters_of(issuer) {
            if hostcalls::set_effective_context(id).is_ok() {
                let step = plugin.runtime.advance(
                    &HostStore,
                    id,
                    &waiter.request,
                    Caller::Root,
                    &host::now_ms,
                );
                plugin.apply(step);
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
        let Some(plugin_rc) = self.plugin().cloned() else {
            return;
        };
        let now_ms = host::now_ms();
        let issuer = {
            let Ok(mut plugin) = plugin_rc.try_borrow_mut() else {
                return;
            };
            let Some(i) = plugin
                .runtime
                .issuers
                .iter()
                .position(|k| k.is_fetch(token_id))
            else {
                return;
            };
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
            let Some(keys) = plugin.runtime.issuers.get_mut(i) else {
                return;
            };
            let report = keys.fetch_answered(status, &body, now_ms);
            let name = plugin.issuer_name(i);
            match report {
                FetchReport::Loaded { keys, skipped } => {
                    plugin.count(Counter::JwksFetchOk);
                    if keys == 0 {
                        host::log(
                            LogLevel::Warn,
                            &format!(
                                "mcp-auth: jwks {name} publishes no usable key: its tokens are refused"
                            ),
                        );
                    } else {
                        host::log(
                            LogLevel::Info,
                            &format!("mcp-auth: jwks {name} loaded {keys} keys"),
                        );
                    }
                    for skipped in skipped {
                        host::log(
                            LogLevel::Debug,
                            &format!("mcp-auth: jwks {name} ignored {skipped}"),
                        );
                    }
                }
                FetchReport::Failed(why) => {
                    plugin.count(Counter::JwksFetchFailed);
                    host::log(
                        LogLevel::Warn,
                        &format!("mcp-auth: jwks {name} fetch failed: {why}"),
                    );
                }
            }
            i
        };
        Self::wake(&plugin_rc, issuer);
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
        let mut plugin = Plugin {
            runtime: Runtime::new(cfg),
            metrics,
        };
        let now_ms = host::now_ms();
        for i in 0..plugin.runtime.issuers.len() {
            plugin.start_fetch_if_due(i, now_ms);
        }
        let _ = hostcalls::set_tick_period(TICK);
        host::log(
            LogLevel::Info,
            &format!(
                "mcp-auth: configured {} resource(s), {} issuer(s)",
                plugin.runtime.cfg.resources.len(),
                plugin.runtime.cfg.issuers.len()
            ),
        );
        self.state = RootState::Running(Rc::new(RefCell::new(plugin)));
        true
    }

    fn on_tick(&mut self) {
        let Some(plugin_rc) = self.plugin().cloned() else {
            return;
        };
        let Ok(mut plugin) = plugin_rc.try_borrow_mut() else {
            return;
        };
        let now_ms = host::now_ms();
        for i in 0..plugin.runtime.issuers.len() {
            plugin.start_fetch_if_due(i, now_ms);
        }
        for (id, waiter) in plugin.runtime.take_expired(now_ms) {
            if hostcalls::set_effective_context(id).is_err() {
                continue;
            }
            if let Some(step) = waiter.deadline_passed() {
                plugin.apply(step);
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(
            context_id,
            self.plugin().cloned(),
            Rc::new(RefCell::new(RequestState::Start)),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
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
