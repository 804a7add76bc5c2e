//! The JSON of a JWS: only the header parameters and claims the filter reads, decoded straight
//! from the text without building a `serde_json::Value` tree.
//!
//! A token's JSON is parsed on every cache miss; a full `Value` (a map with every claim, an
//! allocation per key and string) cost more than the ES256 verification in V8. Here each member
//! the filter reads becomes a [`Loose`] value and every other member is skipped by the same
//! parser (still fully checked, its strings decoded). The text must be valid UTF-8 and one JSON object, exactly
//! as before.
//!
//! **Duplicate members.** RFC 7515 §4 and RFC 7519 §4 let a parser reject a JSON object with a
//! duplicate member name, or take the last one. Different parsers take different ones, so a token
//! with two `aud` or two `exp` could be read one way here and another way by the authorization
//! server, an upstream or an audit tool. A duplicate of any member the filter reads (the header's
//! `alg`, `typ`, `kid`, `crit`; the claims `iss`, `aud`, `exp`, `nbf`, `iat`, `scope`, `scp`,
//! `sub`, `client_id` and the configured identity claims) is therefore refused
//! ([`TokenError::Duplicate`]); duplicates of members the filter never reads are skipped like the
//! members themselves, since nothing here depends on them.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::config::IdentityHeader;
use crate::token::TokenError;

/// A member's value as the checks need it.
#[derive(Debug, Clone, PartialEq)]
pub enum Loose {
    /// A string.
    Str(String),
    /// A non-negative integer that fits `u64`.
    Int(u64),
    /// A negative integer that fits `i64`.
    Neg(i64),
    /// Any other number.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// An array whose items are all strings.
    Strings(Vec<String>),
    /// `null`, an object, or an array with an item that is not a string.
    Other,
}

impl Loose {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Loose::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a header value: strings as they are, numbers and booleans as JSON writes
    /// them, an array of strings joined by spaces; `None` for anything structured.
    pub fn render(&self) -> Option<String> {
        match self {
            Loose::Str(s) => Some(s.clone()),
            Loose::Int(n) => Some(n.to_string()),
            Loose::Neg(n) => Some(n.to_string()),
            Loose::Float(f) => serde_json::Number::from_f64(*f).map(|n| n.to_string()),
            Loose::Bool(b) => Some(b.to_string()),
            Loose::Strings(items) => Some(items.join(" ")),
            Loose::Other => None,
        }
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Loose, E> {
        Ok(Loose::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Loose, E> {
        Ok(Loose::Int(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Loose, E> {
        Ok(u64::try_from(v).map_or(Loose::Neg(v), Loose::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Loose, E> {
        Ok(Loose::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Loose, E> {
        Ok(Loose::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Loose, E> {
        Ok(Loose::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Loose, E> {
        Ok(Loose::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
        let mut items = Vec::new();
        let mut all_strings = true;
        while let Some(item) = seq.next_element::<Loose>()? {
            match item {
                Loose::Str(s) if all_strings => items.push(s),
                _ => all_strings = false,
            }
        }
        Ok(if all_strings {
            Loose::Strings(items)
        } else {
            Loose::Other
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Loose::Other)
    }
}

impl<'de> de::Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Loose, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

/// A member the filter does not read. Parsed like any other value (strings decoded, so a lone
/// surrogate escape or a control character is refused wherever it is) but kept nowhere; strings
/// without escapes are borrowed, so skipping allocates nothing.
pub struct Skip;

impl<'de> de::Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        struct SkipVisitor;
        impl<'de> Visitor<'de> for SkipVisitor {
            type Value = Skip;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_unit<E>(self) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
                while seq.next_element::<Skip>()?.is_some() {}
                Ok(Skip)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
                while map.next_entry::<Skip, Skip>()?.is_some() {}
                Ok(Skip)
            }
        }
        d.deserialize_any(SkipVisitor)
    }
}

/// A member name, borrowed from the text unless it has escapes (`"\u0061ud"` is `aud`).
pub struct Key<'de>(pub Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Stores a member's value, or notes a duplicate and stops the parse.
fn fill<'de, A: MapAccess<'de>>(
    slot: &mut Option<Loose>,
    map: &mut A,
    duplicate: &Cell<bool>,
) -> Result<(), A::Error> {
    if slot.is_some() {
        duplicate.set(true);
        return Err(de::Error::custom("duplicate member"));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// Parses `bytes` as one JSON object filling `target`; `not_object` for anything that is not
/// valid UTF-8 JSON text holding one object, [`TokenError::Duplicate`] for a repeated member read.
fn parse<T>(
    bytes: &[u8],
    not_object: TokenError,
    target: T,
    identity: &[IdentityHeader],
) -> Result<T, TokenError>
where
    for<'a, 'de> ObjectSeed<'a, T>: DeserializeSeed<'de, Value = T>,
{
    // Every string, read or skipped, goes through the parser's string decoding (which checks
    // UTF-8); outside strings only ASCII is valid JSON.
    let duplicate = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = ObjectSeed {
        target,
        duplicate: &duplicate,
        identity,
    };
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if duplicate.get() => Err(TokenError::Duplicate),
        Err(_) => Err(not_object),
    }
}

/// Fills `T` from one JSON object.
pub struct ObjectSeed<'a, T> {
    target: T,
    duplicate: &'a Cell<bool>,
    identity: &'a [IdentityHeader],
}

/// The JOSE header parameters the filter reads.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Header {
    /// `alg`.
    pub alg: Option<Loose>,
    /// `typ`.
    pub typ: Option<Loose>,
    /// `kid`.
    pub kid: Option<Loose>,
    /// Whether `crit` is present (whatever its value).
    pub crit: bool,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, Header> {
    type Value = Header;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Header, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_, Header> {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Header, A::Error> {
        let h = &mut self.target;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "alg" => fill(&mut h.alg, &mut map, self.duplicate)?,
                "typ" => fill(&mut h.typ, &mut map, self.duplicate)?,
                "kid" => fill(&mut h.kid, &mut map, self.duplicate)?,
                "crit" => {
                    if h.crit {
                        self.duplicate.set(true);
                        return Err(de::Error::custom("duplicate member"));
                    }
                    h.crit = true;
                    map.next_value::<Skip>()?;
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(self.target)
    }
}

/// Decodes a JOSE header.
pub fn parse_header(bytes: &[u8]) -> Result<Header, TokenError> {
    parse(bytes, TokenError::HeaderJson, Header::default(), &[])
}

/// The claims the filter reads: the registered ones its checks use, and the configured identity
/// claims.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Claims {
    /// `iss`.
    pub iss: Option<Loose>,
    /// `aud`.
    pub aud: Option<Loose>,
    /// `exp`.
    pub exp: Option<Loose>,
    /// `nbf`.
    pub nbf: Option<Loose>,
    /// `iat`.
    pub iat: Option<Loose>,
    /// `scope`.
    pub scope: Option<Loose>,
    /// `scp`.
    pub scp: Option<Loose>,
    /// `sub`.
    pub sub: Option<Loose>,
    /// `client_id`.
    pub client_id: Option<Loose>,
    /// The configured identity claims that are none of the above, in configuration order
    /// (`None` for absent ones and for names held in the fields above).
    extra: Vec<Option<Loose>>,
}

impl Claims {
    fn registered_mut(&mut self, name: &str) -> Option<&mut Option<Loose>> {
        Some(match name {
            "iss" => &mut self.iss,
            "aud" => &mut self.aud,
            "exp" => &mut self.exp,
            "nbf" => &mut self.nbf,
            "iat" => &mut self.iat,
            "scope" => &mut self.scope,
            "scp" => &mut self.scp,
            "sub" => &mut self.sub,
            "client_id" => &mut self.client_id,
            _ => return None,
        })
    }

    fn registered(&self, name: &str) -> Option<&Option<Loose>> {
        Some(match name {
            "iss" => &self.iss,
            "aud" => &self.aud,
            "exp" => &self.exp,
            "nbf" => &self.nbf,
            "iat" => &self.iat,
            "scope" => &self.scope,
            "scp" => &self.scp,
            "sub" => &self.sub,
            "client_id" => &self.client_id,
            _ => return None,
        })
    }

    /// Identity claim `index` of the `identity` list the claims were parsed with.
    pub fn identity_claim(&self, identity: &[IdentityHeader], index: usize) -> Option<&Loose> {
        let name = &identity.get(index)?.claim;
        if let Some(slot) = self.registered(name) {
            return slot.as_ref();
        }
        // The first configured header of this claim holds its value.
        let first = identity.iter().position(|h| &h.claim == name)?;
        self.extra.get(first)?.as_ref()
    }
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, Claims> {
    type Value = Claims;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Claims, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_, Claims> {
    type Value = Claims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Claims, A::Error> {
        let c = &mut self.target;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if let Some(slot) = c.registered_mut(&key) {
                fill(slot, &mut map, self.duplicate)?;
            } else if let Some(i) = self.identity.iter().position(|h| h.claim == key)
                && let Some(slot) = c.extra.get_mut(i)
            {
                fill(slot, &mut map, self.duplicate)?;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(self.target)
    }
}

/// Decodes a JWT claims set, keeping the registered claims and the claims of `identity`.
pub fn parse_claims(bytes: &[u8], identity: &[IdentityHeader]) -> Result<Claims, TokenError> {
    let target = Claims {
        extra: vec![None; identity.len()],
        ..Claims::default()
    };
    parse(bytes, TokenError::PayloadJson, target, identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn ids(names: &[&str]) -> Vec<IdentityHeader> {
        names
            .iter()
            .map(|n| IdentityHeader {
                claim: n.to_string(),
                header: format!("x-{n}"),
            })
            .collect()
    }

    /// What `serde_json::Value` made of a member, rendered the way the identity headers were.
    fn value_render(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Array(items) => items
                .iter()
                .map(Value::as_str)
                .collect::<Option<Vec<_>>>()
                .map(|p| p.join(" ")),
            Value::Null | Value::Object(_) => None,
        }
    }

    #[test]
    fn values_render_as_the_json_tree_did() {
        for text in [
            r#""alice""#,
            r#""caf\u00e9 \"q\"""#,
            "0",
            "5",
            "18446744073709551615",
            "18446744073709551616",
            "-5",
            "-9223372036854775808",
            "1.5",
            "1e3",
            "-0",
            "-0.0",
            "1e300",
            "true",
            "false",
            "null",
            "[]",
            r#"["a","b"]"#,
            r#"["a",1]"#,
            r#"[["a"]]"#,
            r#"{"a":1}"#,
        ] {
            let doc = format!(r#"{{"g":{text}}}"#);
            let want: Value = serde_json::from_str(&doc).unwrap();
            let c = parse_claims(doc.as_bytes(), &ids(&["g"])).unwrap();
            let got = c.identity_claim(&ids(&["g"]), 0).and_then(Loose::render);
            assert_eq!(got, value_render(&want["g"]), "{text}");
        }
    }

    #[test]
    fn only_read_members_are_kept_and_escaped_names_match() {
        let doc = br#"{"\u0061ud":"r","jti":"x","nested":{"aud":"no"},"iss":"i","g":[1],"h":true}"#;
        let c = parse_claims(doc, &ids(&["g", "h", "sub"])).unwrap();
        assert_eq!(c.aud, Some(Loose::Str("r".into())));
        assert_eq!(c.iss, Some(Loose::Str("i".into())));
        assert_eq!(c.sub, None);
        let idc = ids(&["g", "h", "sub"]);
        assert_eq!(c.identity_claim(&idc, 0), Some(&Loose::Other));
        assert_eq!(c.identity_claim(&idc, 1), Some(&Loose::Bool(true)));
        assert_eq!(c.identity_claim(&idc, 2), None);
        assert_eq!(c.identity_claim(&idc, 3), None);
    }

    #[test]
    fn duplicates_of_read_members_are_refused() {
        for doc in [
            r#"{"aud":"a","aud":"b"}"#,
            r#"{"exp":1,"exp":2}"#,
            r#"{"exp":1,"e\u0078p":1}"#,
            r#"{"iss":"a","x":1,"iss":"a"}"#,
            r#"{"scp":["a"],"scp":["b"]}"#,
            r#"{"g":1,"g":2}"#,
        ] {
            assert_eq!(
                parse_claims(doc.as_bytes(), &ids(&["g"])),
                Err(TokenError::Duplicate),
                "{doc}"
            );
        }
        for doc in [
            r#"{"alg":"EdDSA","alg":"none"}"#,
            r#"{"kid":"a","kid":"b"}"#,
            r#"{"typ":"JWT","typ":"JWT"}"#,
            r#"{"crit":[],"crit":[]}"#,
        ] {
            assert_eq!(
                parse_header(doc.as_bytes()),
                Err(TokenError::Duplicate),
                "{doc}"
            );
        }
        // Members the filter never reads may repeat: nothing depends on them.
        assert!(parse_claims(br#"{"jti":"a","jti":"b","aud":"r"}"#, &[]).is_ok());
        // A duplicate inside a skipped object is not a duplicate claim.
        assert!(parse_claims(br#"{"cnf":{"aud":1,"aud":2},"aud":"r"}"#, &[]).is_ok());
    }

    #[test]
    fn anything_but_one_utf8_json_object_is_refused() {
        for doc in [
            &b""[..],
            b"null",
            b"\"s\"",
            b"[]",
            b"{",
            b"{}x",
            b"{} {}",
            b"{\"a\":1,}",
            b"{\"jti\":\"\xff\"}",
            b"{\"jti\":\"\\ud800\"}",
            b"{\"jti\":\"a\x01\"}",
            b"{'a':1}",
        ] {
            assert_eq!(
                parse_claims(doc, &[]),
                Err(TokenError::PayloadJson),
                "{}",
                String::from_utf8_lossy(doc)
            );
            assert_eq!(
                parse_header(doc),
                Err(TokenError::HeaderJson),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
        assert!(parse_claims(b" {} ", &[]).is_ok());
    }
}
