//! The MCP method and name of a request: from the `Mcp-Method` / `Mcp-Name` headers
//! (2026-07-28, with the `=?base64?…?=` sentinel form) and from the JSON-RPC body (all revisions).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

const SENTINEL_PREFIX: &str = "=?base64?";
const SENTINEL_SUFFIX: &str = "?=";
const MAX_HEADER_VALUE: usize = 4096;

const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One JSON-RPC request or notification: its method and, for `tools/call` / `prompts/get` its
/// `params.name`, for `resources/read` its `params.uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpCall {
    /// JSON-RPC `method`.
    pub method: String,
    /// Tool/prompt name or resource URI.
    pub name: Option<String>,
}

/// Why the MCP request is malformed (all → 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpRequestError {
    /// `Mcp-Method` empty, too long or not visible ASCII.
    BadMethodHeader,
    /// `Mcp-Name` sentinel with invalid Base64 or UTF-8, or a raw value with invalid characters.
    BadNameEncoding,
    /// No body on a POST that needs one.
    EmptyBody,
    /// Body is not a JSON-RPC message or batch.
    NotJsonRpc,
    /// A named method without a string name.
    NameMissingInBody,
    /// Empty batch.
    EmptyBatch,
    /// `Mcp-Method` differs from the body's `method`.
    MethodMismatch,
    /// `Mcp-Name` differs from the body's name.
    NameMismatch,
    /// `Mcp-Method` names a method that needs `Mcp-Name`, but it is absent.
    NameHeaderMissing,
    /// A batch body together with `Mcp-Method`.
    BatchWithHeaders,
}

impl McpRequestError {
    /// The `error_description`.
    pub fn description(self) -> &'static str {
        match self {
            McpRequestError::BadMethodHeader => "invalid Mcp-Method header",
            McpRequestError::BadNameEncoding => "invalid Mcp-Name header encoding",
            McpRequestError::EmptyBody => "missing JSON-RPC body",
            McpRequestError::NotJsonRpc => "body is not a JSON-RPC message",
            McpRequestError::NameMissingInBody => "params.name or params.uri missing",
            McpRequestError::EmptyBatch => "empty JSON-RPC batch",
            McpRequestError::MethodMismatch => "Mcp-Method header does not match the body",
            McpRequestError::NameMismatch => "Mcp-Name header does not match the body",
            McpRequestError::NameHeaderMissing => "Mcp-Name header required for this method",
            McpRequestError::BatchWithHeaders => "Mcp-Method header with a JSON-RPC batch",
        }
    }
}

/// The decoded `Mcp-Method` / `Mcp-Name` headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpHeaders {
    /// `Mcp-Method`.
    pub method: Option<String>,
    /// `Mcp-Name`, sentinel-decoded.
    pub name: Option<String>,
}

/// The params member that carries the name for `method`, if any.
fn name_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Decodes an `Mcp-Name` value: the sentinel form `=?base64?<standard Base64>?=` is decoded as
/// UTF-8, anything else is taken literally (it must then be visible ASCII or space).
pub fn decode_name(raw: &str) -> Result<String, McpRequestError> {
    if raw.len() > MAX_HEADER_VALUE {
        return Err(McpRequestError::BadNameEncoding);
    }
    if let Some(inner) = raw
        .strip_prefix(SENTINEL_PREFIX)
        .and_then(|r| r.strip_suffix(SENTINEL_SUFFIX))
    {
        let bytes = STANDARD_ANY_PAD
            .decode(inner)
            .map_err(|_| McpRequestError::BadNameEncoding)?;
        return String::from_utf8(bytes).map_err(|_| McpRequestError::BadNameEncoding);
    }
    if raw.is_empty() || !raw.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(McpRequestError::BadNameEncoding);
    }
    Ok(raw.to_string())
}

/// Reads the two headers (raw values as the host gave them).
pub fn parse_headers(
    method: Option<&str>,
    name: Option<&str>,
) -> Result<McpHeaders, McpRequestError> {
    let method = match method {
        None => None,
        Some(m) if !m.is_empty() && m.len() <= 256 && m.bytes().all(|b| b.is_ascii_graphic()) => {
            Some(m.to_string())
        }
        Some(_) => return Err(McpRequestError::BadMethodHeader),
    };
    let name = name.map(decode_name).transpose()?;
    Ok(McpHeaders { method, name })
}

fn call_of(message: &Value) -> Result<Option<McpCall>, McpRequestError> {
    let obj = message.as_object().ok_or(McpRequestError::NotJsonRpc)?;
    let method = match obj.get("method") {
        // A JSON-RPC response (client answering a server request) carries no method.
        None => return Ok(None),
        Some(Value::String(m)) => m.clone(),
        Some(_) => return Err(McpRequestError::NotJsonRpc),
    };
    let name = match name_param(&method) {
        None => None,
        Some(member) => Some(
            obj.get("params")
                .and_then(|p| p.get(member))
                .and_then(Value::as_str)
                .ok_or(McpRequestError::NameMissingInBody)?
                .to_string(),
        ),
    };
    Ok(Some(McpCall { method, name }))
}

/// The calls in a JSON-RPC body (one message or a batch).
pub fn parse_body(body: &[u8]) -> Result<ParsedBody, McpRequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(McpRequestError::EmptyBody);
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| McpRequestError::NotJsonRpc)?;
    match &value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(McpRequestError::EmptyBatch);
            }
            let mut calls = Vec::new();
            for item in items {
                calls.extend(call_of(item)?);
            }
            Ok(ParsedBody::Batch(calls))
        }
        single => Ok(ParsedBody::Single(call_of(single)?)),
    }
}

/// A parsed JSON-RPC body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedBody {
    /// One message (`None` for a response).
    Single(Option<McpCall>),
    /// A batch (2025-03-26).
    Batch(Vec<McpCall>),
}

/// Checks the headers against the body and returns the calls to authorize.
pub fn reconcile(headers: &McpHeaders, body: ParsedBody) -> Result<Vec<McpCall>, McpRequestError> {
    let Some(header_method) = &headers.method else {
        // Older clients: the body alone decides. A stray Mcp-Name must still agree.
        return match body {
            ParsedBody::Single(Some(call)) => {
                if headers.name.is_some() && headers.name != call.name {
                    return Err(McpRequestError::NameMismatch);
                }
                Ok(vec![call])
            }
            ParsedBody::Single(None) => Ok(Vec::new()),
            ParsedBody::Batch(calls) => Ok(calls),
        };
    };
    let call = match body {
        ParsedBody::Batch(_) => return Err(McpRequestError::BatchWithHeaders),
        ParsedBody::Single(None) => return Err(McpRequestError::MethodMismatch),
        ParsedBody::Single(Some(call)) => call,
    };
    if *header_method != call.method {
        return Err(McpRequestError::MethodMismatch);
    }
    match (&headers.name, &call.name) {
        (None, Some(_)) => Err(McpRequestError::NameHeaderMissing),
        (Some(h), Some(b)) if h != b => Err(McpRequestError::NameMismatch),
        (Some(_), None) => Err(McpRequestError::NameMismatch),
        _ => Ok(vec![call]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, name: Option<&str>) -> McpCall {
        McpCall {
            method: method.to_string(),
            name: name.map(str::to_string),
        }
    }

    fn hdr(method: Option<&str>, name: Option<&str>) -> McpHeaders {
        parse_headers(method, name).expect("valid headers")
    }

    #[test]
    fn sentinel_names_are_decoded_and_plain_names_kept() {
        assert_eq!(decode_name("admin_report"), Ok("admin_report".to_string()));
        // "=?base64?literal?=" encoded, the spec's own example.
        assert_eq!(
            decode_name("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="),
            Ok("=?base64?literal?=".to_string())
        );
        assert_eq!(decode_name("=?base64?w6ljaG8=?="), Ok("écho".to_string()));
        assert_eq!(decode_name("=?base64?w6ljaG8?="), Ok("écho".to_string()));
        // Only the complete, lowercase markers form a sentinel.
        assert_eq!(
            decode_name("=?BASE64?abc?="),
            Ok("=?BASE64?abc?=".to_string())
        );
        assert_eq!(decode_name("=?base64?abc"), Ok("=?base64?abc".to_string()));
        for bad in [
            "=?base64?not base64!?=",
            "=?base64?/w==?=",
            "",
            "tab\there",
            "caf\u{e9}",
        ] {
            assert_eq!(
                decode_name(bad),
                Err(McpRequestError::BadNameEncoding),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn method_header_must_be_visible_ascii() {
        assert_eq!(
            parse_headers(Some("tools/call"), None),
            Ok(hdr(Some("tools/call"), None))
        );
        for bad in ["", "tools call", "t\u{7f}"] {
            assert_eq!(
                parse_headers(Some(bad), None),
                Err(McpRequestError::BadMethodHeader),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn body_calls_are_extracted_per_method() {
        let table: Vec<(&str, Result<ParsedBody, McpRequestError>)> = vec![
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_report","arguments":{}}}"#,
                Ok(ParsedBody::Single(Some(call(
                    "tools/call",
                    Some("admin_report"),
                )))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#,
                Ok(ParsedBody::Single(Some(call(
                    "resources/read",
                    Some("file:///a"),
                )))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}"#,
                Ok(ParsedBody::Single(Some(call("prompts/get", Some("p"))))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                Ok(ParsedBody::Single(Some(call("tools/list", None)))),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                Ok(ParsedBody::Single(Some(call(
                    "notifications/initialized",
                    None,
                )))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
                Ok(ParsedBody::Single(None)),
            ),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"result":{}}]"#,
                Ok(ParsedBody::Batch(vec![call("tools/list", None)])),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
                Err(McpRequestError::NameMissingInBody),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
                Err(McpRequestError::NameMissingInBody),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
                Err(McpRequestError::NotJsonRpc),
            ),
            (r#"[]"#, Err(McpRequestError::EmptyBatch)),
            (r#"[1]"#, Err(McpRequestError::NotJsonRpc)),
            (r#""tools/call""#, Err(McpRequestError::NotJsonRpc)),
            (
                r#"{"method":"tools/call","params":{"name":"x"}"#,
                Err(McpRequestError::NotJsonRpc),
            ),
            ("  \n", Err(McpRequestError::EmptyBody)),
        ];
        for (body, want) in table {
            assert_eq!(parse_body(body.as_bytes()), want, "{body}");
        }
        assert_eq!(parse_body(&[0xff, 0xfe]), Err(McpRequestError::NotJsonRpc));
    }

    #[test]
    fn headers_must_agree_with_the_body() {
        let admin = || ParsedBody::Single(Some(call("tools/call", Some("admin_report"))));
        let table: Vec<(
            McpHeaders,
            ParsedBody,
            Result<Vec<McpCall>, McpRequestError>,
        )> = vec![
            (
                hdr(Some("tools/call"), Some("admin_report")),
                admin(),
                Ok(vec![call("tools/call", Some("admin_report"))]),
            ),
            (
                hdr(None, None),
                admin(),
                Ok(vec![call("tools/call", Some("admin_report"))]),
            ),
            (
                hdr(Some("tools/call"), Some("echo")),
                admin(),
                Err(McpRequestError::NameMismatch),
            ),
            (
                hdr(Some("tools/list"), None),
                admin(),
                Err(McpRequestError::MethodMismatch),
            ),
            (
                hdr(Some("tools/call"), None),
                admin(),
                Err(McpRequestError::NameHeaderMissing),
            ),
            (
                hdr(None, Some("echo")),
                admin(),
                Err(McpRequestError::NameMismatch),
            ),
            (
                hdr(Some("tools/list"), Some("x")),
                ParsedBody::Single(Some(call("tools/list", None))),
                Err(McpRequestError::NameMismatch),
            ),
            (
                hdr(Some("tools/list"), None),
                ParsedBody::Batch(vec![call("tools/list", None)]),
                Err(McpRequestError::BatchWithHeaders),
            ),
            (
                hdr(Some("tools/list"), None),
                ParsedBody::Single(None),
                Err(McpRequestError::MethodMismatch),
            ),
            (hdr(None, None), ParsedBody::Single(None), Ok(vec![])),
            (
                hdr(Some("tools/call"), Some("=?base64?YWRtaW5fcmVwb3J0?=")),
                admin(),
                Ok(vec![call("tools/call", Some("admin_report"))]),
            ),
        ];
        for (h, body, want) in table {
            assert_eq!(reconcile(&h, body), want, "{h:?}");
        }
    }
}
