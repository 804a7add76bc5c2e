//! Which scopes an MCP operation needs: the resource's base scopes plus every matching tool rule.

use wildmatch::WildMatch;

use crate::mcp_request::McpCall;

/// One `tool_scopes` rule, patterns compiled.
#[derive(Debug, Clone)]
pub struct ToolRule {
    method: WildMatch,
    name: Option<WildMatch>,
    scopes: Vec<String>,
}

impl ToolRule {
    /// Builds a rule from glob patterns (`*`, `?`).
    pub fn new(method: &str, name: Option<&str>, scopes: Vec<String>) -> Self {
        ToolRule {
            method: WildMatch::new(method),
            name: name.map(WildMatch::new),
            scopes,
        }
    }

    /// Does this rule apply to the call?
    pub fn matches(&self, call: &McpCall) -> bool {
        self.method.matches(&call.method)
            && match (&self.name, &call.name) {
                (None, _) => true,
                (Some(pattern), Some(name)) => pattern.matches(name),
                (Some(_), None) => false,
            }
    }
}

/// The scopes a set of calls needs, in a stable order: base scopes first, then rule scopes in
/// rule order, without duplicates.
pub fn required_scopes(base: &[String], rules: &[ToolRule], calls: &[McpCall]) -> Vec<String> {
    let mut needed: Vec<String> = Vec::new();
    let mut add = |s: &String| {
        if !needed.contains(s) {
            needed.push(s.clone());
        }
    };
    base.iter().for_each(&mut add);
    for rule in rules {
        if calls.iter().any(|c| rule.matches(c)) {
            rule.scopes.iter().for_each(&mut add);
        }
    }
    needed
}

/// Every scope a request could need: the base scopes, then each rule's, without duplicates
/// (what [`required_scopes`] returns for calls matching every rule).
pub fn every_scope(base: &[String], rules: &[ToolRule]) -> Vec<String> {
    let mut all = base.to_vec();
    for scope in rules.iter().flat_map(|r| &r.scopes) {
        if !all.contains(scope) {
            all.push(scope.clone());
        }
    }
    all
}

/// Whether `granted` holds every scope the calls need ([`required_scopes`]), without building
/// that list: an allowed request runs this, and only a denial needs the list (for its
/// challenge).
pub fn calls_allowed(
    base: &[String],
    rules: &[ToolRule],
    calls: &[McpCall],
    granted: &[String],
) -> bool {
    let all_granted = |scopes: &[String]| scopes.iter().all(|s| granted.contains(s));
    all_granted(base)
        && rules
            .iter()
            .filter(|r| calls.iter().any(|c| r.matches(c)))
            .all(|r| all_granted(&r.scopes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn call(method: &str, name: Option<&str>) -> McpCall {
        McpCall {
            method: method.to_string(),
            name: name.map(str::to_string),
        }
    }

    fn rules() -> Vec<ToolRule> {
        vec![
            ToolRule::new("tools/call", Some("admin_*"), s(&["mcp:admin"])),
            ToolRule::new(
                "tools/call",
                Some("delete_?"),
                s(&["mcp:delete", "mcp:admin"]),
            ),
            ToolRule::new("resources/*", None, s(&["mcp:read"])),
        ]
    }

    #[test]
    fn needed_scopes_are_base_plus_every_matching_rule() {
        let base = s(&["mcp:tools"]);
        let table: Vec<(McpCall, Vec<String>)> = vec![
            (
                call("tools/call", Some("admin_report")),
                s(&["mcp:tools", "mcp:admin"]),
            ),
            (call("tools/call", Some("echo")), s(&["mcp:tools"])),
            (call("tools/call", Some("Admin_report")), s(&["mcp:tools"])),
            (
                call("tools/call", Some("delete_x")),
                s(&["mcp:tools", "mcp:delete", "mcp:admin"]),
            ),
            (call("tools/call", Some("delete_xy")), s(&["mcp:tools"])),
            (call("tools/list", None), s(&["mcp:tools"])),
            (call("tools/call", None), s(&["mcp:tools"])),
            (
                call("resources/read", Some("file:///x")),
                s(&["mcp:tools", "mcp:read"]),
            ),
            (call("resources/list", None), s(&["mcp:tools", "mcp:read"])),
        ];
        for (c, want) in table {
            assert_eq!(
                required_scopes(&base, &rules(), std::slice::from_ref(&c)),
                want,
                "{c:?}"
            );
        }
    }

    #[test]
    fn a_batch_needs_the_union() {
        let calls = [
            call("tools/call", Some("admin_x")),
            call("resources/read", Some("u")),
        ];
        assert_eq!(
            required_scopes(&s(&["mcp:tools"]), &rules(), &calls),
            s(&["mcp:tools", "mcp:admin", "mcp:read"])
        );
    }

    #[test]
    fn every_scope_is_the_base_then_each_rules_scopes_once() {
        assert_eq!(
            every_scope(&s(&["mcp:tools", "mcp:admin"]), &rules()),
            s(&["mcp:tools", "mcp:admin", "mcp:delete", "mcp:read"])
        );
        assert_eq!(every_scope(&[], &[]), Vec::<String>::new());
    }

    #[test]
    fn calls_are_allowed_exactly_when_every_required_scope_is_granted() {
        let base = s(&["mcp:tools"]);
        let batches = [
            vec![],
            vec![call("tools/call", Some("echo"))],
            vec![call("tools/call", Some("admin_report"))],
            vec![call("tools/call", Some("delete_x"))],
            vec![
                call("tools/call", Some("admin_x")),
                call("resources/read", Some("u")),
            ],
        ];
        let grants = [
            s(&[]),
            s(&["mcp:tools"]),
            s(&["mcp:admin", "mcp:tools"]),
            s(&["mcp:admin", "mcp:delete"]),
            s(&["mcp:read", "mcp:tools", "mcp:admin", "mcp:delete"]),
        ];
        let mut allowed = 0;
        for calls in &batches {
            for granted in &grants {
                let needed = required_scopes(&base, &rules(), calls);
                let expected = needed.iter().all(|n| granted.contains(n));
                assert_eq!(
                    calls_allowed(&base, &rules(), calls, granted),
                    expected,
                    "{calls:?} with {granted:?}"
                );
                allowed += usize::from(expected);
            }
        }
        assert_eq!(allowed, 10, "the table has both outcomes");
        assert!(calls_allowed(&[], &[], &[], &[]));
        assert!(!calls_allowed(&base, &[], &[], &[]));
    }
}
