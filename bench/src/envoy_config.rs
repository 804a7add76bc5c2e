//! Envoy bootstrap configurations for the benchmark cells (written as JSON, which Envoy reads
//! like YAML when the file name ends in `.json`).
//!
//! Every configuration has one listener whose only route answers with `direct_response` (200,
//! body `ok`), so no upstream is involved: what differs between cells is the HTTP filter chain.

use serde_json::{Value, json};
use std::path::Path;

use crate::tokens::{AUDIENCE, Alg, ISSUER, SCOPE};

/// The authentication a cell puts in front of the direct response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Router only.
    None,
    /// Envoy's native `jwt_authn`, with or without `jwt_cache_config`.
    JwtAuthn { alg: Alg, cache: bool },
    /// The no-op proxy-wasm filter (`bench/noop-filter`).
    NoopWasm,
    /// The host-call floor (`bench/floor-filter`).
    FloorWasm,
    /// The MCP auth filter with a token cache of `cache_entries` slots; with `tool_rules` the
    /// resource has per-tool rules and the host holds headers while the body is read (as the
    /// shipped configurations in `envoy/` do), so every `POST` body is buffered and parsed.
    Filter {
        alg: Alg,
        cache_entries: u32,
        tool_rules: bool,
        /// The filter's `access_log_properties` (its default is on; the bench's rows turn
        /// them off like `jwt_authn`, which leaves nothing for the access log by default).
        access_log: bool,
    },
}

/// Size of `jwt_authn`'s cache when it is enabled (its default is 100; one token needs one).
pub const JWT_AUTHN_CACHE_SIZE: u32 = 100;
/// The request path the load generator uses (protected by the filter's resource).
pub const PATH: &str = "/mcp";

/// Paths of the wasm modules.
pub struct Wasm<'a> {
    pub filter: &'a Path,
    pub noop: &'a Path,
    pub floor: &'a Path,
}

/// The bootstrap for one Envoy process.
pub fn bootstrap(
    auth: &Auth,
    listen_port: u16,
    admin_port: u16,
    jwks: &Value,
    wasm: &Wasm,
) -> Value {
    let mut http_filters = auth_filter(auth, jwks, wasm)
        .into_iter()
        .collect::<Vec<_>>();
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        }
    }));
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } } },
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": listen_port } },
                "filter_chains": [{
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "bench",
                            "codec_type": "HTTP1",
                            "route_config": {
                                "name": "bench",
                                "virtual_hosts": [{
                                    "name": "bench",
                                    "domains": ["*"],
                                    "routes": [{
                                        "match": { "prefix": "/" },
                                        "direct_response": { "status": 200, "body": { "inline_string": "ok" } }
                                    }]
                                }]
                            },
                            "http_filters": http_filters
                        }
                    }]
                }]
            }]
        }
    })
}

fn auth_filter(auth: &Auth, jwks: &Value, wasm: &Wasm) -> Option<Value> {
    match auth {
        Auth::None => None,
        Auth::JwtAuthn { cache, .. } => {
            let mut provider = json!({
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "local_jwks": { "inline_string": jwks.to_string() },
                "forward": false,
                "claim_to_headers": IDENTITY_HEADERS
                    .iter()
                    .map(|(claim, header)| json!({ "claim_name": claim, "header_name": header }))
                    .collect::<Vec<_>>()
            });
            if *cache && let Some(provider) = provider.as_object_mut() {
                let config = json!({ "jwt_cache_size": JWT_AUTHN_CACHE_SIZE });
                provider.insert("jwt_cache_config".into(), config);
            }
            Some(json!({
                "name": "envoy.filters.http.jwt_authn",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                    "providers": { "bench": provider },
                    "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "bench" } }]
                }
            }))
        }
        Auth::NoopWasm => Some(wasm_filter("noop", wasm.noop, "")),
        Auth::FloorWasm => Some(wasm_filter("floor", wasm.floor, "")),
        Auth::Filter {
            cache_entries,
            tool_rules,
            access_log,
            ..
        } => {
            let mut filter = wasm_filter(
                "mcp_auth",
                wasm.filter,
                &filter_config(jwks, *cache_entries, *tool_rules, *access_log).to_string(),
            );
            // Envoy's half of `hold_headers_for_body`: never one without the other.
            if *tool_rules
                && let Some(config) = filter
                    .pointer_mut("/typed_config/config")
                    .and_then(Value::as_object_mut)
            {
                config.insert("allow_on_headers_stop_iteration".into(), json!(true));
            }
            Some(filter)
        }
    }
}

/// Claims both authenticators forward upstream (claim, header), as the demo configuration does:
/// the work every authenticated request pays besides the token check. `jwt_authn` removes the
/// token (`forward: false`) like the filter.
pub const IDENTITY_HEADERS: [(&str, &str); 3] = [
    ("sub", "x-mcp-subject"),
    ("client_id", "x-mcp-client-id"),
    ("scope", "x-mcp-scope"),
];

/// The scope the per-tool rule of the `tool_rules` cells asks for (the bench's tokens lack it,
/// and the tool they call, [`crate::wrk::TOOL_CALL_BODY`]'s, is not covered by the rule).
pub const ADMIN_SCOPE: &str = "mcp:admin";

/// The filter's plugin configuration: inline JWKS, issuer, audience, one required scope, the
/// identity headers; without `tool_rules` no per-tool rules (so request bodies are never
/// buffered), with them the demo's rule (`admin_*` tools need [`ADMIN_SCOPE`]) and
/// `hold_headers_for_body`, as in the shipped Envoy configurations; `access_log` sets
/// `access_log_properties`.
pub fn filter_config(
    jwks: &Value,
    cache_entries: u32,
    tool_rules: bool,
    access_log: bool,
) -> Value {
    let mut resource = json!({
        "path_prefix": PATH,
        "resource": AUDIENCE,
        "authorization_servers": [ISSUER],
        "scopes_supported": [SCOPE, ADMIN_SCOPE],
        "required_scopes": [SCOPE]
    });
    if tool_rules && let Some(resource) = resource.as_object_mut() {
        resource.insert(
            "tool_scopes".into(),
            json!([{ "method": "tools/call", "name": "admin_*", "scopes": [ADMIN_SCOPE] }]),
        );
    }
    json!({
        "resources": [resource],
        "issuers": [{ "issuer": ISSUER, "jwks": { "inline": jwks } }],
        "identity_headers": IDENTITY_HEADERS
            .iter()
            .map(|(claim, header)| (claim.to_string(), json!(header)))
            .collect::<serde_json::Map<_, _>>(),
        "token_cache": { "max_entries": cache_entries },
        "hold_headers_for_body": tool_rules,
        "access_log_properties": access_log
    })
}

fn wasm_filter(name: &str, path: &Path, configuration: &str) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                "fail_open": false,
                "vm_config": {
                    "vm_id": name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": path.display().to_string() } }
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm() -> Wasm<'static> {
        Wasm {
            filter: Path::new("/f.wasm"),
            noop: Path::new("/n.wasm"),
            floor: Path::new("/l.wasm"),
        }
    }

    fn filters(b: &Value) -> Vec<String> {
        b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn each_cell_differs_only_in_the_filter_before_the_router() {
        let jwks = json!({"keys": []});
        let cases = [
            (Auth::None, vec!["envoy.filters.http.router"]),
            (
                Auth::JwtAuthn {
                    alg: Alg::EdDsa,
                    cache: false,
                },
                vec!["envoy.filters.http.jwt_authn", "envoy.filters.http.router"],
            ),
            (
                Auth::NoopWasm,
                vec!["envoy.filters.http.wasm", "envoy.filters.http.router"],
            ),
            (
                Auth::FloorWasm,
                vec!["envoy.filters.http.wasm", "envoy.filters.http.router"],
            ),
            (
                Auth::Filter {
                    alg: Alg::Rs256,
                    cache_entries: 1,
                    tool_rules: false,
                    access_log: false,
                },
                vec!["envoy.filters.http.wasm", "envoy.filters.http.router"],
            ),
        ];
        for (auth, expected) in cases {
            let b = bootstrap(&auth, 1000, 1001, &jwks, &wasm());
            assert_eq!(filters(&b), expected, "{auth:?}");
            let route = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
                ["route_config"]["virtual_hosts"][0]["routes"][0];
            assert_eq!(route["direct_response"]["status"], 200);
        }
    }

    #[test]
    fn jwt_authn_cache_config_is_present_only_when_asked_for() {
        let jwks = json!({"keys": []});
        let provider = |cache| {
            let b = bootstrap(
                &Auth::JwtAuthn {
                    alg: Alg::Es256,
                    cache,
                },
                1,
                2,
                &jwks,
                &wasm(),
            );
            b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
                ["http_filters"][0]["typed_config"]["providers"]["bench"]
                .clone()
        };
        assert_eq!(provider(true)["jwt_cache_config"]["jwt_cache_size"], 100);
        assert!(provider(false).get("jwt_cache_config").is_none());
        assert_eq!(provider(false)["audiences"][0], AUDIENCE);
        assert_eq!(
            provider(false)["claim_to_headers"][0],
            json!({"claim_name": "sub", "header_name": "x-mcp-subject"})
        );
        assert_eq!(
            provider(true)["claim_to_headers"].as_array().unwrap().len(),
            3
        );
    }

    #[test]
    fn filter_configuration_is_inline_jwks_with_the_requested_cache_size() {
        let jwks = json!({"keys": [{"kty": "OKP"}]});
        let config = filter_config(&jwks, 1, false, false);
        assert_eq!(config["token_cache"]["max_entries"], 1);
        assert_eq!(config["hold_headers_for_body"], false);
        assert_eq!(config["access_log_properties"], false);
        assert_eq!(
            filter_config(&jwks, 1, false, true)["access_log_properties"],
            true
        );
        assert_eq!(config["issuers"][0]["jwks"]["inline"], jwks);
        assert_eq!(config["resources"][0]["path_prefix"], PATH);
        assert!(config["resources"][0].get("tool_scopes").is_none());
        assert_eq!(config["identity_headers"]["client_id"], "x-mcp-client-id");
        assert_eq!(config["identity_headers"].as_object().unwrap().len(), 3);
    }

    #[test]
    fn tool_rules_come_with_both_halves_of_holding_headers_for_the_body() {
        let jwks = json!({"keys": []});
        let filter = |tool_rules| {
            let b = bootstrap(
                &Auth::Filter {
                    alg: Alg::EdDsa,
                    cache_entries: 8,
                    tool_rules,
                    access_log: false,
                },
                1,
                2,
                &jwks,
                &wasm(),
            );
            b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
                ["http_filters"][0]["typed_config"]["config"]
                .clone()
        };
        let with = filter(true);
        assert_eq!(with["allow_on_headers_stop_iteration"], true);
        let config: Value =
            serde_json::from_str(with["configuration"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(config["hold_headers_for_body"], true);
        assert_eq!(
            config["resources"][0]["tool_scopes"][0]["scopes"][0],
            ADMIN_SCOPE
        );
        let without = filter(false);
        assert!(without.get("allow_on_headers_stop_iteration").is_none());
        let config: Value =
            serde_json::from_str(without["configuration"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(config["hold_headers_for_body"], false);
        assert!(config["resources"][0].get("tool_scopes").is_none());
    }
}
