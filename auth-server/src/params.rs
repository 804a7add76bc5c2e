//! `application/x-www-form-urlencoded` parameters with duplicate detection
//! (OAuth parameters must not appear more than once).

/// Does the request declare this media type (parameters such as `charset` ignored)?
pub fn has_content_type(headers: &axum::http::HeaderMap, mime: &str) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(mime))
}

#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(bytes: &[u8]) -> Self {
        Params {
            pairs: url::form_urlencoded::parse(bytes).into_owned().collect(),
        }
    }

    /// The value of a parameter that may appear at most once; empty values count as absent.
    pub fn single(&self, name: &str) -> Result<Option<&str>, String> {
        let mut values = self
            .pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(format!("parameter `{name}` appears more than once"));
        }
        Ok(first.filter(|v| !v.is_empty()))
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Keeps only the named parameters (in their original order).
    pub fn only(&self, names: &[&str]) -> Params {
        Params {
            pairs: self
                .pairs
                .iter()
                .filter(|(k, _)| names.contains(&k.as_str()))
                .cloned()
                .collect(),
        }
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    pub fn to_query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.pairs.iter())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_reported_and_empty_is_absent() {
        let p = Params::parse(b"a=1&b=&c=2&c=3&d=%3Cx%3E");
        assert_eq!(p.single("a").unwrap(), Some("1"));
        assert_eq!(p.single("b").unwrap(), None);
        assert!(p.single("c").is_err());
        assert_eq!(p.single("d").unwrap(), Some("<x>"));
        assert_eq!(p.all("c"), vec!["2", "3"]);
        assert_eq!(p.only(&["a", "d"]).to_query(), "a=1&d=%3Cx%3E");
    }
}
