//! Header maps as Envoy keeps them (ordered, names lower-cased, repeated names allowed) and
//! their proxy-wasm wire encoding.

/// An ordered list of header pairs. Names are lower-cased on the way in, as Envoy's codecs do;
/// values are raw bytes so tests can send invalid UTF-8.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Builds a map from any pairs of string-like or byte-like values.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Headers
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut headers = Headers::new();
        for (name, value) in pairs {
            headers.add(name.as_ref(), value.as_ref());
        }
        headers
    }

    /// The first value of `name`, if it is valid UTF-8 (what Envoy's
    /// `proxy_get_header_map_value` returns for a repeated header).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `name` as bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        let wanted = name.to_ascii_lowercase();
        self.pairs
            .iter()
            .find(|(k, _)| k.as_slice() == wanted.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of `name`, lossily decoded, in order.
    pub fn get_all(&self, name: &str) -> Vec<String> {
        let wanted = name.to_ascii_lowercase();
        self.pairs
            .iter()
            .filter(|(k, _)| k.as_slice() == wanted.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// All pairs, lossily decoded.
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Appends a pair (Envoy `addCopy`).
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        self.pairs.push((name.to_ascii_lowercase(), value.to_vec()));
    }

    /// Removes every pair named `name` and appends one (Envoy `setCopy`).
    pub fn replace(&mut self, name: &[u8], value: &[u8]) {
        let lower = name.to_ascii_lowercase();
        match self.pairs.iter().position(|(k, _)| *k == lower) {
            Some(first) => {
                if let Some(pair) = self.pairs.get_mut(first) {
                    pair.1 = value.to_vec();
                }
                let mut index = 0;
                self.pairs.retain(|(k, _)| {
                    let keep = index <= first || *k != lower;
                    index += 1;
                    keep
                });
            }
            None => self.pairs.push((lower, value.to_vec())),
        }
    }

    /// Removes every pair named `name`.
    pub fn remove(&mut self, name: &[u8]) {
        let lower = name.to_ascii_lowercase();
        self.pairs.retain(|(k, _)| *k != lower);
    }

    pub(crate) fn raw_pairs(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.pairs
    }

    /// The proxy-wasm map encoding: pair count, then (name length, value length) per pair,
    /// then each name and value followed by a NUL byte; all integers little-endian u32.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&wire_len(self.pairs.len()).to_le_bytes());
        for (name, value) in &self.pairs {
            out.extend_from_slice(&wire_len(name.len()).to_le_bytes());
            out.extend_from_slice(&wire_len(value.len()).to_le_bytes());
        }
        for (name, value) in &self.pairs {
            out.extend_from_slice(name);
            out.push(0);
            out.extend_from_slice(value);
            out.push(0);
        }
        out
    }

    /// Decodes the proxy-wasm map encoding, lower-casing names as Envoy does.
    pub fn deserialize(bytes: &[u8]) -> Result<Headers, String> {
        if bytes.is_empty() {
            return Ok(Headers::new());
        }
        let mut reader = Reader { bytes, at: 0 };
        let count = reader.u32()? as usize;
        let mut sizes = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let name = reader.u32()? as usize;
            let value = reader.u32()? as usize;
            sizes.push((name, value));
        }
        let mut headers = Headers::new();
        for (name_len, value_len) in sizes {
            let name = reader.take(name_len)?;
            reader.nul()?;
            let value = reader.take(value_len)?;
            reader.nul()?;
            headers.add(name, value);
        }
        Ok(headers)
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>, const N: usize> From<[(K, V); N]> for Headers {
    fn from(pairs: [(K, V); N]) -> Headers {
        Headers::from_pairs(pairs)
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> From<Vec<(K, V)>> for Headers {
    fn from(pairs: Vec<(K, V)>) -> Headers {
        Headers::from_pairs(pairs)
    }
}

impl<K: AsRef<[u8]> + Clone, V: AsRef<[u8]> + Clone> From<&[(K, V)]> for Headers {
    fn from(pairs: &[(K, V)]) -> Headers {
        Headers::from_pairs(pairs.iter().cloned())
    }
}

fn wire_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let slice = self
            .at
            .checked_add(len)
            .and_then(|end| self.bytes.get(self.at..end))
            .ok_or_else(|| format!("header map truncated at byte {}", self.at))?;
        self.at += len;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let raw = self.take(4)?;
        let raw: [u8; 4] = raw.try_into().map_err(|_| "a u32 is 4 bytes".to_string())?;
        Ok(u32::from_le_bytes(raw))
    }

    fn nul(&mut self) -> Result<(), String> {
        match self.take(1)? {
            [0] => Ok(()),
            _ => Err(format!("header map missing NUL at byte {}", self.at - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_encoding_round_trips_including_empty_values_and_binary_bytes() {
        let headers = Headers::from_pairs([
            (&b":path"[..], &b"/mcp"[..]),
            (b"x-empty", b""),
            (b"x-bin", b"\xff\xfe"),
        ]);
        assert_eq!(Headers::deserialize(&headers.serialize()), Ok(headers));
    }

    #[test]
    fn replace_keeps_the_first_position_and_drops_later_duplicates() {
        let mut headers = Headers::from([("a", "1"), ("b", "2"), ("a", "3")]);
        headers.replace(b"A", b"9");
        assert_eq!(
            headers.to_vec(),
            vec![("a".into(), "9".into()), ("b".into(), "2".into())]
        );
    }

    #[test]
    fn truncated_map_is_an_error_not_a_panic() {
        assert!(Headers::deserialize(&[1, 0, 0, 0, 5, 0, 0, 0]).is_err());
    }
}
