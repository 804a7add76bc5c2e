//! The MCP method and name of a request: from the `Mcp-Method` / `Mcp-Name` headers
//! (2026-07-28, with the `=?base64?…?=` sentinel form) and from the JSON-RPC body (all revisions).

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::claims::{Key, Skip};

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
    /// A `method` key whose meaning depends on the parser: repeated, or a key that is not
    /// `method` but that a lenient parser takes for it.
    AmbiguousMethod,
    /// The same for `params`.
    AmbiguousParams,
    /// The same for `params.name`.
    AmbiguousParamsName,
    /// The same for `params.uri`.
    AmbiguousParamsUri,
    /// A message object that is not a JSON-RPC 2.0 request, notification or response.
    NotAMessage,
    /// Another key of a message whose meaning depends on the parser: repeated, escaped, or taken
    /// for one of the other members by a lenient parser.
    AmbiguousKeyInMessage,
    /// The same in `params`.
    AmbiguousKeyInParams,
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
            McpRequestError::NotAMessage => "not a JSON-RPC 2.0 request, notification or response",
            McpRequestError::AmbiguousMethod => "ambiguous method key",
            McpRequestError::AmbiguousParams => "ambiguous params key",
            McpRequestError::AmbiguousParamsName => "ambiguous params.name key",
            McpRequestError::AmbiguousParamsUri => "ambiguous params.uri key",
            McpRequestError::AmbiguousKeyInMessage => "ambiguous key in a JSON-RPC message",
            McpRequestError::AmbiguousKeyInParams => "ambiguous key in params",
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

/// A protocol member name and the ambiguity of a key that repeats or imitates it.
type Member = (&'static str, McpRequestError);

/// The members of a JSON-RPC 2.0 request, notification or response object.
const MESSAGE_MEMBERS: &[Member] = &[
    ("jsonrpc", McpRequestError::AmbiguousKeyInMessage),
    ("id", McpRequestError::AmbiguousKeyInMessage),
    ("method", McpRequestError::AmbiguousMethod),
    ("params", McpRequestError::AmbiguousParams),
    ("result", McpRequestError::AmbiguousKeyInMessage),
    ("error", McpRequestError::AmbiguousKeyInMessage),
];

/// The members MCP defines for the `params` of the methods that carry a name (`tools/call`,
/// `prompts/get`, `resources/read`): the two the filter authorizes by, and the ones that change
/// what the call does.
const PARAMS_MEMBERS: &[Member] = &[
    ("name", McpRequestError::AmbiguousParamsName),
    ("uri", McpRequestError::AmbiguousParamsUri),
    ("arguments", McpRequestError::AmbiguousKeyInParams),
    ("_meta", McpRequestError::AmbiguousKeyInParams),
];

/// One kind of object whose keys are checked: a message, or a message's `params`.
struct KeyRules {
    members: &'static [Member],
    /// A duplicate or escaped key that is no member name.
    other: McpRequestError,
}

const MESSAGE_KEYS: KeyRules = KeyRules {
    members: MESSAGE_MEMBERS,
    other: McpRequestError::AmbiguousKeyInMessage,
};

const PARAMS_KEYS: KeyRules = KeyRules {
    members: PARAMS_MEMBERS,
    other: McpRequestError::AmbiguousKeyInParams,
};

/// `c` as lenient key comparisons see it: ASCII letters in lower case, and the four non-ASCII
/// letters whose simple case mappings are ASCII letters (UnicodeData.txt, CaseFolding.txt) as
/// those. Go's `EqualFold` takes long s (U+017F) for s and the Kelvin sign (U+212A) for k;
/// comparisons through simple upper- or lower-case mappings, such as Java's `equalsIgnoreCase`,
/// also take dotless and dotted I (U+0131, U+0130) for i. Full-width letters stay themselves:
/// only NFKC normalization, which no JSON parser applies to keys, makes them ASCII.
fn folded(c: char) -> char {
    match c {
        '\u{17f}' => 's',
        '\u{212a}' => 'k',
        '\u{131}' | '\u{130}' => 'i',
        c => c.to_ascii_lowercase(),
    }
}

/// Whether a parser comparing keys case-insensitively, or reading them as C strings, takes the
/// key written `raw` (the text between the quotes) for `name` (lower-case ASCII). An escape
/// sequence ends the comparison: it is how a NUL gets into a key.
fn reads_as(raw: &str, name: &str) -> bool {
    let mut expected = name.chars();
    for c in raw.chars().take_while(|c| *c != '\\') {
        if expected.next() != Some(folded(c)) {
            return false;
        }
    }
    expected.next().is_none()
}

/// A message or `params` object while the scan is inside it.
#[derive(Default)]
struct ScannedObject<'a> {
    /// Nesting depth of its keys; 0 when the scan is not inside such an object.
    depth: usize,
    /// Keys seen, as written (none has an escape: [`ScannedObject::add_key`] refuses those, so
    /// equal text is an equal key).
    keys: Vec<&'a [u8]>,
    /// Member names seen, a bit per index in the member list.
    members_seen: u32,
}

impl<'a> ScannedObject<'a> {
    fn open(depth: usize) -> Self {
        ScannedObject {
            depth,
            ..Default::default()
        }
    }

    /// Refuses a key that reads as a member name without being it, a member name seen before,
    /// or any key written with an escape (MCP's member names need none; escapes are how NULs
    /// and look-alikes are spelled).
    fn add_key(&mut self, raw: &'a [u8], rules: &KeyRules) -> Result<(), McpRequestError> {
        let text = std::str::from_utf8(raw).map_err(|_| McpRequestError::NotJsonRpc)?;
        self.keys.push(raw);
        let member = rules
            .members
            .iter()
            .enumerate()
            .find(|(_, (name, _))| reads_as(text, name));
        match member {
            Some((_, &(name, key))) if name != text => Err(key),
            Some((i, &(_, key))) => {
                let bit = 1 << i;
                if self.members_seen & bit != 0 {
                    return Err(key);
                }
                self.members_seen |= bit;
                Ok(())
            }
            None if text.contains('\\') => Err(rules.other),
            None => Ok(()),
        }
    }

    /// At the object's end: a key seen twice is refused (parsers differ in which copy they
    /// keep). Sorted, so a body of many keys costs `k log k`, not `k²`.
    fn close(&mut self, rules: &KeyRules) -> Result<(), McpRequestError> {
        self.depth = 0;
        let mut keys = std::mem::take(&mut self.keys);
        keys.sort_unstable();
        if keys.windows(2).any(|pair| pair.first() == pair.get(1)) {
            Err(rules.other)
        } else {
            Ok(())
        }
    }
}

/// Checks the keys of every message object of a body and of its `params` object
/// ([`ScannedObject::add_key`], [`ScannedObject::close`]). `body` is text serde_json accepted, so
/// it is valid JSON: this scan only follows its strings, brackets and commas, it never decides
/// what is valid.
fn check_keys(body: &[u8]) -> Result<(), McpRequestError> {
    let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let message_depth = if batch { 2 } else { 1 };
    let (mut message, mut params) = (ScannedObject::default(), ScannedObject::default());
    let (mut depth, mut key_next, mut params_next) = (0, false, false);
    let mut at = 0;
    while let Some(&byte) = body.get(at) {
        let start = at;
        at += 1;
        let params_value = match byte {
            b' ' | b'\t' | b'\r' | b'\n' | b':' => continue,
            _ => std::mem::take(&mut params_next),
        };
        match byte {
            b'"' => {
                // To the closing quote; a backslash escapes the byte after it.
                while let Some(&b) = body.get(at) {
                    at += if b == b'\\' { 2 } else { 1 };
                    if b == b'"' {
                        break;
                    }
                }
                let raw = body.get(start + 1..at - 1).unwrap_or_default();
                if key_next && depth == params.depth {
                    params.add_key(raw, &PARAMS_KEYS)?;
                } else if key_next && depth == message.depth {
                    message.add_key(raw, &MESSAGE_KEYS)?;
                    params_next = raw == b"params";
                }
                key_next = false;
            }
            b'{' => {
                depth += 1;
                if depth == message_depth {
                    message = ScannedObject::open(depth);
                } else if params_value && depth == message_depth + 1 {
                    params = ScannedObject::open(depth);
                }
                key_next = true;
            }
            b'}' | b']' => {
                if depth == params.depth {
                    params.close(&PARAMS_KEYS)?;
                } else if depth == message.depth {
                    message.close(&MESSAGE_KEYS)?;
                }
                depth = depth.saturating_sub(1);
            }
            b'[' => {
                depth += 1;
                key_next = false;
            }
            b',' => key_next = true,
            _ => {}
        }
    }
    Ok(())
}

/// A member value as the message checks read it: strings kept (borrowed from the body unless
/// escaped), everything else only by kind; nested values are parsed and dropped ([`Skip`]).
#[derive(Debug, PartialEq)]
enum Field<'a> {
    Str(Cow<'a, str>),
    Number,
    Null,
    /// An object, an array or a boolean.
    Other,
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Field<'de>, E> {
        Ok(Field::Number)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Field<'de>, E> {
        Ok(Field::Number)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Field<'de>, E> {
        Ok(Field::Number)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Field::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Field::Other)
    }
}

impl<'de> de::Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field<'de>, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

/// What the checks read of a message's `params`: whether it is an object, and its `name` and
/// `uri`.
#[derive(Debug, Default, PartialEq)]
struct Params<'a> {
    object: bool,
    name: Option<Field<'a>>,
    uri: Option<Field<'a>>,
}

/// What the checks read of one JSON-RPC message: whether it is an object, and its members
/// (a repeated member keeps its last value, as `serde_json::Value` did; [`check_keys`] refuses
/// the message anyway).
#[derive(Debug, Default, PartialEq)]
struct Message<'a> {
    object: bool,
    jsonrpc: Option<Field<'a>>,
    id: Option<Field<'a>>,
    method: Option<Field<'a>>,
    params: Option<Params<'a>>,
    result: bool,
    error: bool,
}

/// Visits one message or one `params` value: an object fills `T` member by member, any other
/// value is parsed and leaves `T` at its default (`object: false`).
struct ObjectVisitor<T>(std::marker::PhantomData<T>);

/// Fills a [`Message`] or [`Params`] from one member.
trait FillMember<'de>: Default {
    fn opened(&mut self);
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

impl<'de> FillMember<'de> for Message<'de> {
    fn opened(&mut self) {
        self.object = true;
    }
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "jsonrpc" => self.jsonrpc = Some(map.next_value()?),
            "id" => self.id = Some(map.next_value()?),
            "method" => self.method = Some(map.next_value()?),
            "params" => self.params = Some(map.next_value()?),
            "result" => {
                map.next_value::<Skip>()?;
                self.result = true;
            }
            "error" => {
                map.next_value::<Skip>()?;
                self.error = true;
            }
            _ => {
                map.next_value::<Skip>()?;
            }
        }
        Ok(())
    }
}

impl<'de> FillMember<'de> for Params<'de> {
    fn opened(&mut self) {
        self.object = true;
    }
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "name" => self.name = Some(map.next_value()?),
            "uri" => self.uri = Some(map.next_value()?),
            _ => {
                map.next_value::<Skip>()?;
            }
        }
        Ok(())
    }
}

impl<'de, T: FillMember<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(T::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut target = T::default();
        target.opened();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            target.member(&key, &mut map)?;
        }
        Ok(target)
    }
}

impl<'de> de::Deserialize<'de> for Params<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Params<'de>, D::Error> {
        d.deserialize_any(ObjectVisitor(std::marker::PhantomData))
    }
}

impl<'de> de::Deserialize<'de> for Message<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Message<'de>, D::Error> {
        d.deserialize_any(ObjectVisitor(std::marker::PhantomData))
    }
}

/// A body: one message, or a batch (an array, each item read as a message).
enum Body<'a> {
    Single(Message<'a>),
    Batch(Vec<Message<'a>>),
}

impl<'de> de::Deserialize<'de> for Body<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Body<'de>, D::Error> {
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = Body<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Body<'de>, E> {
                Ok(Body::Single(Message::default()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Body<'de>, E> {
                Ok(Body::Single(Message::default()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Body<'de>, E> {
                Ok(Body::Single(Message::default()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Body<'de>, E> {
                Ok(Body::Single(Message::default()))
            }
            fn visit_str<E>(self, _: &str) -> Result<Body<'de>, E> {
                Ok(Body::Single(Message::default()))
            }
            fn visit_unit<E>(self) -> Result<Body<'de>, E> {
                Ok(Body::Single(Message::default()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Body<'de>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Message<'de>>()? {
                    items.push(item);
                }
                Ok(Body::Batch(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Body<'de>, A::Error> {
                ObjectVisitor(std::marker::PhantomData)
                    .visit_map(map)
                    .map(Body::Single)
            }
        }
        d.deserialize_any(BodyVisitor)
    }
}

/// The call a well-formed message makes (`None` for a response), or why the message is refused.
fn call_of(message: &Message<'_>) -> Result<Option<McpCall>, McpRequestError> {
    if !message.object {
        return Err(McpRequestError::NotJsonRpc);
    }
    if !matches!(&message.jsonrpc, Some(Field::Str(v)) if v == "2.0") {
        return Err(McpRequestError::NotAMessage);
    }
    // 0: no id, 1: a string or number, 2: null (only in an error answering an unreadable
    // request), 3: anything else.
    let id = match &message.id {
        None => 0,
        Some(Field::Str(_) | Field::Number) => 1,
        Some(Field::Null) => 2,
        Some(Field::Other) => 3,
    };
    let (result, error) = (message.result, message.error);
    let method = match &message.method {
        Some(Field::Str(method)) => method,
        Some(_) => return Err(McpRequestError::NotJsonRpc),
        // A response (the client answering a server request): an id and exactly one of result
        // and error.
        None if result != error && (id == 1 || id == 2) => return Ok(None),
        None => return Err(McpRequestError::NotAMessage),
    };
    // A request (a string or number id: MCP forbids null) or a notification (no id).
    if id > 1 || result || error {
        return Err(McpRequestError::NotAMessage);
    }
    let params = message.params.as_ref();
    // MCP's params are always an object.
    if params.is_some_and(|p| !p.object) {
        return Err(McpRequestError::NotJsonRpc);
    }
    let name = match name_param(method) {
        None => None,
        Some(member) => {
            let value =
                params.and_then(|p| if member == "uri" { &p.uri } else { &p.name }.as_ref());
            match value {
                Some(Field::Str(name)) => Some(name.to_string()),
                _ => return Err(McpRequestError::NameMissingInBody),
            }
        }
    };
    Ok(Some(McpCall {
        method: method.to_string(),
        name,
    }))
}

/// The calls in a JSON-RPC body (one message or a batch). Every message, also inside a batch, is
/// refused unless it is a well-formed JSON-RPC 2.0 request, notification or response whose keys,
/// and the keys of its `params`, mean the same to every parser ([`check_keys`]).
///
/// Parsed straight into what the checks read ([`Message`]): every value is still parsed and
/// every string decoded (invalid UTF-8, a lone surrogate escape or a control character anywhere
/// is refused), but no `serde_json::Value` tree is built; this runs on every `tools/call` whose
/// route has per-tool rules.
pub fn parse_body(body: &[u8]) -> Result<ParsedBody, McpRequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(McpRequestError::EmptyBody);
    }
    let parsed: Body<'_> = serde_json::from_slice(body).map_err(|_| McpRequestError::NotJsonRpc)?;
    check_keys(body)?;
    match &parsed {
        Body::Batch(items) => {
            if items.is_empty() {
                return Err(McpRequestError::EmptyBatch);
            }
            let mut calls = Vec::new();
            for item in items {
                calls.extend(call_of(item)?);
            }
            Ok(ParsedBody::Batch(calls))
        }
        Body::Single(message) => Ok(ParsedBody::Single(call_of(message)?)),
    }
}

/// The `id` of the request a body holds (one message whose `id` is a string or a number), as
/// JSON text, for an error response about it. Parses the body again: only an error path calls it.
pub fn request_id(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Value>(body).ok()?.get("id")? {
        id @ (Value::String(_) | Value::Number(_)) => Some(id.to_string()),
        _ => None,
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

    #[test]
    fn the_request_id_is_read_from_a_single_message_only() {
        for (body, want) in [
            (
                r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call"}"#,
                Some(r#""a-1""#.to_string()),
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call"}"#,
                Some("7".to_string()),
            ),
            (r#"{"jsonrpc":"2.0","id":null,"method":"tools/call"}"#, None),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                None,
            ),
            (r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#, None),
            ("not json", None),
        ] {
            assert_eq!(request_id(body.as_bytes()), want, "{body}");
        }
    }

    fn admin_call() -> Result<ParsedBody, McpRequestError> {
        Ok(ParsedBody::Single(Some(call(
            "tools/call",
            Some("admin_report"),
        ))))
    }

    #[test]
    fn keys_that_lenient_parsers_read_as_a_member_name_are_refused() {
        use McpRequestError::{
            AmbiguousKeyInMessage as InMessage, AmbiguousKeyInParams as InParams, AmbiguousMethod,
            AmbiguousParams, AmbiguousParamsName, AmbiguousParamsUri,
        };
        let table = [
            // Case-insensitive matching (Go's encoding/json, the Go MCP SDK before 1.3.1): the
            // server may run `Name` where the filter authorized `name`.
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","Name":"admin_report"}}"#,
                AmbiguousParamsName,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"admin_report","name":"whoami"}}"#,
                AmbiguousParamsName,
            ),
            // A key read as a C string, up to its NUL (the Go SDK's next parser).
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","name\u0000":"admin_report"}}"#,
                AmbiguousParamsName,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","name\u0000\u0000":"admin_report"}}"#,
                AmbiguousParamsName,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","name\u0000x":"admin_report"}}"#,
                AmbiguousParamsName,
            ),
            // Unicode simple case folding: long s (U+017F) is s, dotless and dotted I are i.
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"},"paramſ":{"name":"admin_report"}}"#,
                AmbiguousParams,
            ),
            (
                r#"{"jsonrpc":"2.0","ıd":1,"method":"tools/list"}"#,
                InMessage,
            ),
            (
                r#"{"jsonrpc":"2.0","İD":1,"method":"tools/list"}"#,
                InMessage,
            ),
            // A case-variant method alone: the filter used to see a response and authorize
            // nothing, while a case-insensitive server ran the tool.
            (
                r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"admin_report"}}"#,
                AmbiguousMethod,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method\u0000":"tools/call","params":{"name":"admin_report"}}"#,
                AmbiguousMethod,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"URI":"file:///secret","uri":"file:///public"}}"#,
                AmbiguousParamsUri,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","Arguments":{}}}"#,
                InParams,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","_META":{}}}"#,
                InParams,
            ),
            (
                r#"{"JSONRPC":"2.0","jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                InMessage,
            ),
            (r#"{"jsonrpc":"2.0","id":1,"Result":{}}"#, InMessage),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{},"erroR":{}}"#,
                InMessage,
            ),
            // Inside a batch, too.
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","nAme":"admin_report"}}]"#,
                AmbiguousParamsName,
            ),
        ];
        for (body, want) in table {
            assert_eq!(parse_body(body.as_bytes()), Err(want), "{body}");
        }
    }

    #[test]
    fn lenient_comparisons_fold_case_and_stop_at_an_escape() {
        for (raw, name) in [
            ("Name", "name"),
            ("NAME", "name"),
            ("name\\u0000", "name"),
            ("paramſ", "params"),
            ("ıd", "id"),
            ("İd", "id"),
            // The Kelvin sign (U+212A) is k; no member name has a k today.
            ("\u{212a}ey", "key"),
        ] {
            assert!(reads_as(raw, name), "{raw:?} reads as {name}");
        }
        for (raw, name) in [
            ("nam", "name"),
            ("names", "name"),
            ("\\u006eame", "name"),
            ("ｎａｍｅ", "name"),
            ("nаme", "name"),
            ("nam\u{e9}", "name"),
        ] {
            assert!(!reads_as(raw, name), "{raw:?} does not read as {name}");
        }
    }

    #[test]
    fn duplicate_and_escaped_keys_are_refused_whichever_copy_a_parser_keeps() {
        use McpRequestError::{
            AmbiguousKeyInMessage as InMessage, AmbiguousKeyInParams as InParams, AmbiguousMethod,
            AmbiguousParams, AmbiguousParamsName,
        };
        let table = [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"admin_report"}}"#,
                AmbiguousMethod,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_report","name":"whoami"}}"#,
                AmbiguousParamsName,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"},"params":{"name":"admin_report"}}"#,
                AmbiguousParams,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/list"}"#,
                InMessage,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"x":1,"x":2,"method":"tools/list"}"#,
                InMessage,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","x":1,"x":1}}"#,
                InParams,
            ),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"result":{},"result":{}}]"#,
                InMessage,
            ),
            // One key written two ways: MCP's member names never need an escape.
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_report","\u006eame":"whoami"}}"#,
                InParams,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","\u0070arams":{"name":"admin_report","name":"whoami"}}"#,
                InMessage,
            ),
        ];
        for (body, want) in table {
            assert_eq!(parse_body(body.as_bytes()), Err(want), "{body}");
        }
    }

    #[test]
    fn only_well_formed_requests_notifications_and_responses_pass() {
        use McpRequestError::{NotAMessage, NotJsonRpc};
        let table = [
            (r#"{"id":1,"method":"tools/list"}"#, NotAMessage),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"tools/list"}"#,
                NotAMessage,
            ),
            (
                r#"{"jsonrpc":2.0,"id":1,"method":"tools/list"}"#,
                NotAMessage,
            ),
            // A request that also looks like a response.
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","result":{}}"#,
                NotAMessage,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"tools/list","error":{}}"#,
                NotAMessage,
            ),
            // MCP request ids are strings or numbers, never null.
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"tools/list"}"#,
                NotAMessage,
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"tools/list"}"#,
                NotAMessage,
            ),
            // A response has an id and exactly one of result and error.
            (r#"{"jsonrpc":"2.0","result":{}}"#, NotAMessage),
            (r#"{"jsonrpc":"2.0","id":1}"#, NotAMessage),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}"#,
                NotAMessage,
            ),
            (r#"{"jsonrpc":"2.0","id":[1],"result":{}}"#, NotAMessage),
            (r#"{"jsonrpc":"2.0"}"#, NotAMessage),
            // MCP's params are always an object.
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[]}"#,
                NotJsonRpc,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":null}"#,
                NotJsonRpc,
            ),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},[{"a":1,"a":1}]]"#,
                NotJsonRpc,
            ),
        ];
        for (body, want) in table {
            assert_eq!(parse_body(body.as_bytes()), Err(want), "{body}");
        }
    }

    #[test]
    fn text_that_is_no_valid_json_anywhere_is_refused_as_before() {
        // serde_json::Value refused each of these; the typed parse still decodes every string,
        // also the ones it does not keep.
        let tool_call = |arguments: &[u8]| {
            let mut body =
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"t":"#
                    .to_vec();
            body.extend_from_slice(arguments);
            body.extend_from_slice(b"}}}");
            body
        };
        assert_eq!(
            parse_body(&tool_call(br#""fine""#)),
            Ok(ParsedBody::Single(Some(call("tools/call", Some("echo")))))
        );
        for bad in [
            &br#""\ud800""#[..],
            b"\"\xff\"",
            b"\"a\x01b\"",
            br#""\x""#,
            b"1e999",
            b"[1,]",
            b"tru",
        ] {
            let body = tool_call(bad);
            assert!(serde_json::from_slice::<Value>(&body).is_err());
            assert_eq!(
                parse_body(&body),
                Err(McpRequestError::NotJsonRpc),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        let mut nested = br#"{"jsonrpc":"2.0","id":1,"method":"ping","x":"#.to_vec();
        nested.extend(std::iter::repeat_n(b'[', 200));
        nested.extend(std::iter::repeat_n(b']', 200));
        nested.push(b'}');
        assert_eq!(
            parse_body(&nested),
            Err(McpRequestError::NotJsonRpc),
            "too deep"
        );
        assert_eq!(
            parse_body(br#"{"jsonrpc":"2.0","id":1,"method":"ping"} x"#),
            Err(McpRequestError::NotJsonRpc),
            "trailing text"
        );
    }

    #[test]
    fn what_real_clients_send_is_still_accepted() {
        let table = [
            (
                r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"admin_report","arguments":{"x":1},"_meta":{"progressToken":7}}}"#,
                admin_call(),
            ),
            // The arguments are the tool's: their keys are not checked.
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"Name":"a","name":"b","name":"c","name\u0000":"d","[":"{"},"name":"admin_report"}}"#,
                admin_call(),
            ),
            // Other keys, escaped values, and letters no known parser folds to ASCII
            // (full-width, Cyrillic) are ordinary.
            (
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"admin_report\",\"cursor\":\"c\\\"}\",\"ｎａｍｅ\":\"whoami\",\"nаme\":\"whoami\"},\"x-trace\":\"t\"}",
                admin_call(),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"r"}}"#,
                Ok(ParsedBody::Single(Some(call(
                    "notifications/cancelled",
                    None,
                )))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"s-1","error":{"code":-32601,"message":"no"}}"#,
                Ok(ParsedBody::Single(None)),
            ),
            // JSON-RPC's answer to a request whose id could not be read.
            (
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#,
                Ok(ParsedBody::Single(None)),
            ),
            (
                " \r\n[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"admin_report\"}},\t{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"},{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"x\":[{\"x\":1}]}}]\n",
                Ok(ParsedBody::Batch(vec![
                    call("tools/call", Some("admin_report")),
                    call("notifications/initialized", None),
                ])),
            ),
        ];
        for (body, want) in table {
            assert_eq!(parse_body(body.as_bytes()), want, "{body}");
        }
    }

    #[test]
    fn every_description_is_safe_inside_a_quoted_string() {
        use McpRequestError::*;
        for e in [
            BadMethodHeader,
            BadNameEncoding,
            EmptyBody,
            NotJsonRpc,
            NameMissingInBody,
            EmptyBatch,
            MethodMismatch,
            NameMismatch,
            NameHeaderMissing,
            BatchWithHeaders,
            AmbiguousMethod,
            AmbiguousParams,
            AmbiguousParamsName,
            AmbiguousParamsUri,
            NotAMessage,
            AmbiguousKeyInMessage,
            AmbiguousKeyInParams,
        ] {
            let d = e.description();
            assert!(
                d.bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
                "{d}"
            );
        }
    }
}
