//! RFC 9728 protected resource metadata documents.

use serde_json::{Map, Value, json};

use crate::config::Resource;

/// The well-known prefix; a resource's document lives at this prefix + the resource's path.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Renders the metadata JSON of a resource (done once at configure time).
pub fn document(r: &Resource) -> String {
    let mut doc = Map::new();
    doc.insert("resource".into(), json!(r.resource));
    doc.insert(
        "authorization_servers".into(),
        json!(r.authorization_servers),
    );
    if !r.scopes_supported.is_empty() {
        doc.insert("scopes_supported".into(), json!(r.scopes_supported));
    }
    doc.insert("bearer_methods_supported".into(), json!(["header"]));
    if let Some(name) = &r.resource_name {
        doc.insert("resource_name".into(), json!(name));
    }
    if let Some(docs) = &r.resource_documentation {
        doc.insert("resource_documentation".into(), json!(docs));
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{demo_json, parse};
    use serde_json::{Value, json};

    #[test]
    fn document_has_the_exact_resource_and_authorization_servers() {
        let c = parse(&demo_json()).expect("valid");
        let doc: Value = serde_json::from_str(&c.resources[0].metadata_json).expect("json");
        assert_eq!(
            doc,
            json!({
                "resource": "http://localhost:10000/mcp",
                "authorization_servers": ["http://localhost:9000"],
                "scopes_supported": ["mcp:tools", "mcp:admin"],
                "bearer_methods_supported": ["header"],
                "resource_name": "Demo MCP server",
                "resource_documentation": "http://localhost:10000/docs"
            })
        );
    }

    #[test]
    fn optional_members_are_omitted() {
        let mut v = demo_json();
        let r = v["resources"][0].as_object_mut().expect("object");
        r.remove("scopes_supported");
        r.remove("resource_name");
        r.remove("resource_documentation");
        let c = parse(&v).expect("valid");
        let doc: Value = serde_json::from_str(&c.resources[0].metadata_json).expect("json");
        assert_eq!(doc.as_object().expect("object").len(), 3);
    }
}
