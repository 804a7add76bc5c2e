//! What Envoy's access log records about each request the filter decides on.
//!
//! The glue leaves each field as a proxy-wasm property named `mcp_auth_<field>`; Envoy keeps it
//! in the request's filter state as `wasm.mcp_auth_<field>`, which an access log reads with
//! `%FILTER_STATE(wasm.mcp_auth_<field>:PLAIN)%`. Nothing here comes from a token unverified or
//! from a secret: the subject and client ID are claims of a verified token, and the decision
//! names the failed check, never its input.

use std::borrow::Cow;
use std::rc::Rc;

use crate::config::Config;
use crate::identity::Identity;
use crate::mcp_request::McpCall;
use crate::response::Denial;

/// The audit record of one decided request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// `allowed`, or the denial's kind and what failed (see [`decision`]).
    pub decision: Cow<'static, str>,
    /// The resource, by configuration index.
    pub resource: Option<usize>,
    /// The verified identity, once the token was valid.
    pub identity: Option<Rc<Identity>>,
    /// The JSON-RPC method(s) as far as known, comma separated (empty: unknown).
    pub mcp_method: String,
    /// The tool / prompt names or resource URIs of those calls, comma separated.
    pub mcp_name: String,
}

/// The `decision` field: `allowed`, or the denial's counter name without `mcp_auth.denied.`
/// (`missing_token`, `invalid_token`, `insufficient_scope`, …), followed by `: <what failed>`
/// where there is more to say: the failed check, or for `insufficient_scope` the scopes the
/// token lacks (`granted` are the ones it has).
///
/// Borrowed where nothing is appended (`allowed`, `missing_token`, …): the common decisions cost
/// no allocation on a request that is otherwise served from the token cache.
pub fn decision(denial: Option<&Denial>, granted: &[String]) -> Cow<'static, str> {
    let Some(denial) = denial else {
        return Cow::Borrowed("allowed");
    };
    let name = denial.counter().name();
    let kind = name.strip_prefix("mcp_auth.denied.").unwrap_or(name);
    match denial {
        Denial::InvalidRequest(d)
        | Denial::InvalidToken(d)
        | Denial::BadMcpRequest(d)
        | Denial::HeaderMismatch { description: d, .. } => {
            let mut out = String::from(kind);
            out.push_str(": ");
            out.push_str(d);
            Cow::Owned(out)
        }
        Denial::InsufficientScope(needed) => {
            let mut out = String::from(kind);
            let mut separator = ": ";
            for scope in needed.iter().filter(|s| !granted.contains(s)) {
                out.push_str(separator);
                out.push_str(scope);
                separator = " ";
            }
            Cow::Owned(out)
        }
        Denial::MissingToken
        | Denial::Origin
        | Denial::BodyTooLarge
        | Denial::KeysUnavailable
        | Denial::UnmatchedPath => Cow::Borrowed(kind),
    }
}

/// Appends `value` to a comma-separated list.
fn append(list: &mut String, value: &str) {
    if !list.is_empty() {
        list.push(',');
    }
    list.push_str(value);
}

impl Audit {
    /// A record without MCP calls yet (see [`Audit::add_call`]).
    pub fn new(
        decision: Cow<'static, str>,
        resource: Option<usize>,
        identity: Option<Rc<Identity>>,
    ) -> Self {
        Audit {
            decision,
            resource,
            identity,
            mcp_method: String::new(),
            mcp_name: String::new(),
        }
    }

    /// Records one MCP call (method, and name if it has one).
    pub fn add_call(&mut self, method: &str, name: Option<&str>) {
        append(&mut self.mcp_method, method);
        if let Some(name) = name {
            append(&mut self.mcp_name, name);
        }
    }

    /// Records the calls of a body.
    pub fn add_calls(&mut self, calls: &[McpCall]) {
        for call in calls {
            self.add_call(&call.method, call.name.as_deref());
        }
    }

    /// Hands each known field to `set` as (property name, value); none when the configuration
    /// turned the properties off (`access_log_properties: false`).
    pub fn fields(&self, cfg: &Config, mut set: impl FnMut(&str, &str)) {
        if !cfg.access_log_properties {
            return;
        }
        set("mcp_auth_decision", &self.decision);
        if let Some(r) = self.resource.and_then(|i| cfg.resources.get(i)) {
            set("mcp_auth_resource", &r.resource);
        }
        if let Some(identity) = &self.identity {
            if let Some(subject) = &identity.subject {
                set("mcp_auth_subject", subject);
            }
            if let Some(client_id) = &identity.client_id {
                set("mcp_auth_client_id", client_id);
            }
        }
        if !self.mcp_method.is_empty() {
            set("mcp_auth_mcp_method", &self.mcp_method);
        }
        if !self.mcp_name.is_empty() {
            set("mcp_auth_mcp_name", &self.mcp_name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{demo_json, parse};

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_decision_names_the_denial_and_what_failed() {
        let granted = scopes(&["mcp:tools"]);
        let table = [
            (None, "allowed"),
            (Some(Denial::MissingToken), "missing_token"),
            (
                Some(Denial::InvalidToken("audience not accepted")),
                "invalid_token: audience not accepted",
            ),
            (
                Some(Denial::InvalidRequest("multiple Authorization headers")),
                "invalid_request: multiple Authorization headers",
            ),
            (
                Some(Denial::InsufficientScope(scopes(&[
                    "mcp:tools",
                    "mcp:admin",
                    "mcp:audit",
                ]))),
                "insufficient_scope: mcp:admin mcp:audit",
            ),
            (Some(Denial::Origin), "origin"),
            (
                Some(Denial::BadMcpRequest("missing JSON-RPC body")),
                "bad_mcp_request: missing JSON-RPC body",
            ),
            (Some(Denial::BodyTooLarge), "body_too_large"),
            (Some(Denial::KeysUnavailable), "keys_unavailable"),
            (Some(Denial::UnmatchedPath), "unmatched_path"),
        ];
        for (denial, want) in table {
            assert_eq!(decision(denial.as_ref(), &granted), want);
        }
    }

    fn fields(audit: &Audit) -> Vec<(String, String)> {
        fields_with(audit, true)
    }

    fn fields_with(audit: &Audit, access_log_properties: bool) -> Vec<(String, String)> {
        let mut json = demo_json();
        json["access_log_properties"] = serde_json::json!(access_log_properties);
        let cfg = parse(&json).expect("valid");
        let mut out = Vec::new();
        audit.fields(&cfg, |name, value| {
            out.push((name.to_string(), value.to_string()))
        });
        out
    }

    #[test]
    fn fields_leave_out_what_is_not_known() {
        let identity = Identity {
            exp: 1,
            issuer: 0,
            key: [0; 16],
            scopes: scopes(&["mcp:tools"]),
            header_values: vec![None, None, None],
            subject: Some("alice".into()),
            client_id: Some("c1".into()),
        };
        let mut full = Audit::new("allowed".into(), Some(0), Some(Rc::new(identity)));
        full.add_calls(&[
            McpCall {
                method: "tools/call".into(),
                name: Some("echo".into()),
            },
            McpCall {
                method: "tools/list".into(),
                name: None,
            },
        ]);
        full.add_call("prompts/get", Some("greet"));
        let want = [
            ("mcp_auth_decision", "allowed"),
            ("mcp_auth_resource", "http://localhost:10000/mcp"),
            ("mcp_auth_subject", "alice"),
            ("mcp_auth_client_id", "c1"),
            ("mcp_auth_mcp_method", "tools/call,tools/list,prompts/get"),
            ("mcp_auth_mcp_name", "echo,greet"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(fields(&full), want);
        let bare = Audit::new("unmatched_path".into(), None, None);
        assert_eq!(
            fields(&bare),
            [(
                "mcp_auth_decision".to_string(),
                "unmatched_path".to_string()
            )]
        );
    }

    #[test]
    fn no_field_is_set_when_the_configuration_turns_them_off() {
        let mut audit = Audit::new("allowed".into(), Some(0), None);
        audit.add_call("tools/call", Some("echo"));
        assert_eq!(fields_with(&audit, true).len(), 4);
        assert_eq!(fields_with(&audit, false), []);
    }
}
