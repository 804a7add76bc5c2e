//! Rendering of `envoy/envoy.yaml.tmpl`: every `{{name}}` is replaced by its value.
//!
//! tests/e2e/envoy_template.py implements the same rule for the Python tests; the template is
//! the single source of the demo's Envoy configuration.

use std::collections::BTreeMap;

/// Replaces each `{{name}}` (name: ASCII letters, digits, `_`) with `values[name]`.
/// An unknown name or an unclosed `{{` is an error naming it.
pub fn render(template: &str, values: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed placeholder near {:?}", truncate(after)))?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("malformed placeholder {{{{{name}}}}}"));
        }
        let value = values
            .get(name)
            .ok_or_else(|| format!("no value for placeholder {{{{{name}}}}}"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn truncate(text: &str) -> &str {
    let end = text.char_indices().nth(20).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    }

    #[test]
    fn replaces_every_occurrence() {
        let rendered = render(
            "port: {{port}}\nurl: http://localhost:{{port}}/mcp",
            &values(&[("port", "10000")]),
        );
        assert_eq!(
            rendered.as_deref(),
            Ok("port: 10000\nurl: http://localhost:10000/mcp")
        );
    }

    #[test]
    fn unknown_placeholder_is_an_error_naming_it() {
        let rendered = render("a: {{missing}}", &values(&[("port", "1")]));
        assert_eq!(rendered, Err("no value for placeholder {{missing}}".into()));
    }

    #[test]
    fn unclosed_or_malformed_placeholders_are_errors() {
        assert!(render("a: {{port", &values(&[("port", "1")])).is_err());
        assert!(render("a: {{po rt}}", &values(&[("port", "1")])).is_err());
    }

    #[test]
    fn the_demo_template_renders_completely() {
        let template = include_str!("../../envoy/envoy.yaml.tmpl");
        let rendered = render(
            template,
            &crate::demo::envoy_values(&crate::demo::Ports::DEMO, "/x.wasm", "/x.log"),
        );
        let rendered = rendered.unwrap_or_default();
        assert!(rendered.contains("\"resource\": \"http://localhost:10000/mcp\""));
        assert!(rendered.contains("port_value: 9000"));
        assert!(!rendered.contains("{{"));
        assert!(!rendered.contains("name: auth_server_front"));
    }

    #[test]
    fn the_replica_template_lists_every_replica_behind_a_front_listener() {
        let values = crate::demo::replica_values(
            crate::demo::envoy_values(&crate::demo::Ports::DEMO, "/x.wasm", "/x.log"),
            include_str!("../../envoy/auth-server-front.yaml.tmpl"),
            9000,
            &[9001, 9002, 9003],
        );
        let rendered = render(
            include_str!("../../envoy/envoy.yaml.tmpl"),
            &values.unwrap_or_default(),
        )
        .unwrap_or_default();
        for port in [9001, 9002, 9003] {
            assert!(
                rendered.contains(&format!(
                    "\n                    socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
                )),
                "replica {port} missing:\n{rendered}"
            );
        }
        assert!(rendered.contains(
            "\n    - name: auth_server_front\n      address:\n        socket_address: { address: 127.0.0.1, port_value: 9000 }\n"
        ));
        assert!(!rendered.contains("{{"));
    }
}
