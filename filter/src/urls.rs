//! Strict syntax checks for the few URL shapes the configuration uses.
//!
//! The filter never resolves or normalizes URLs: the configured strings are served byte for byte
//! (RFC 9728 §3.3 requires `resource` to equal what the client used). These checks only make sure
//! a configured value is an absolute `http`/`https` URL of the expected shape.

/// An absolute `http`/`https` URL split into its parts (all borrowed from the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// `host[:port]`.
    pub authority: &'a str,
    /// Empty or starting with `/`.
    pub path: &'a str,
    /// Text after `?`, if any.
    pub query: Option<&'a str>,
}

impl HttpUrl<'_> {
    /// `scheme://authority`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// Path plus query, as an HTTP/2 `:path` (`/` when both are empty).
    pub fn path_and_query(&self) -> String {
        let path = if self.path.is_empty() { "/" } else { self.path };
        match self.query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        }
    }
}

fn is_authority_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':' | b'[' | b']' | b'~')
}

fn is_path_char(c: u8) -> bool {
    c.is_ascii_graphic()
        && !matches!(
            c,
            b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}' | b'#'
        )
}

/// Parses an absolute `http`/`https` URL without userinfo or fragment.
pub fn parse_http_url(s: &str) -> Result<HttpUrl<'_>, &'static str> {
    let (scheme, rest) = if let Some(rest) = s.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = s.strip_prefix("http://") {
        ("http", rest)
    } else {
        return Err("must start with http:// or https://");
    };
    if s.contains('#') {
        return Err("must not contain a fragment");
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    if authority.is_empty() {
        return Err("must have a host");
    }
    if authority.contains('@') {
        return Err("must not contain userinfo");
    }
    if !authority.bytes().all(is_authority_char) {
        return Err("host contains invalid characters");
    }
    if authority.starts_with(':') {
        return Err("must have a host");
    }
    if let Some(port) = port_of(authority)
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("port must be a number");
    }
    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (after, None),
    };
    if !path.bytes().all(is_path_char) || query.is_some_and(|q| !q.bytes().all(is_path_char)) {
        return Err("path contains invalid characters");
    }
    Ok(HttpUrl {
        scheme,
        authority,
        path,
        query,
    })
}

fn port_of(authority: &str) -> Option<&str> {
    if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal: a port may follow the closing bracket.
        let (_, after) = rest.split_once(']')?;
        return after.strip_prefix(':');
    }
    authority.rsplit_once(':').map(|(_, p)| p)
}

/// Checks a public resource URL: absolute http(s), no query or fragment, no trailing slash.
pub fn parse_resource_url(s: &str) -> Result<HttpUrl<'_>, &'static str> {
    const MSG: &str = "must be an absolute http(s) URL without query, fragment or trailing slash";
    let url = parse_http_url(s).map_err(|_| MSG)?;
    if url.query.is_some() || url.path.ends_with('/') {
        return Err(MSG);
    }
    Ok(url)
}

/// Checks a browser origin: `scheme://host[:port]`, lowercase, nothing after the authority.
pub fn check_origin(s: &str) -> Result<(), &'static str> {
    const MSG: &str = "must be an origin like https://app.example.com (lowercase, no path)";
    let url = parse_http_url(s).map_err(|_| MSG)?;
    if !url.path.is_empty() || url.query.is_some() || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(MSG);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_splits_absolute_urls() {
        let u = parse_http_url("https://as.example.com:8443/a/b?x=1").expect("valid url");
        assert_eq!(u.scheme, "https");
        assert_eq!(u.authority, "as.example.com:8443");
        assert_eq!(u.path, "/a/b");
        assert_eq!(u.query, Some("x=1"));
        assert_eq!(u.origin(), "https://as.example.com:8443");
        assert_eq!(u.path_and_query(), "/a/b?x=1");
        let bare = parse_http_url("http://localhost:9000").expect("valid url");
        assert_eq!(bare.path_and_query(), "/");
        assert!(parse_http_url("http://[::1]:9000/jwks").is_ok());
    }

    #[test]
    fn rejects_malformed_urls() {
        for bad in [
            "localhost:9000/x",
            "ftp://host/x",
            "HTTP://host",
            "http://",
            "http:///path",
            "http://user@host/x",
            "http://host/x#frag",
            "http://ho st/x",
            "http://host:abc/x",
            "http://host:/x",
            "http://host/a b",
            "http://host/a\"b",
            "http://:80/x",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn resource_urls_have_no_query_or_trailing_slash() {
        assert!(parse_resource_url("http://localhost:10000/mcp").is_ok());
        assert!(parse_resource_url("https://api.example.com").is_ok());
        for bad in [
            "http://localhost:10000/mcp/",
            "http://h/",
            "http://h/mcp?x=1",
            "http://h/mcp#f",
        ] {
            assert!(parse_resource_url(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn origins_are_scheme_host_port_only() {
        assert!(check_origin("http://localhost:6274").is_ok());
        for bad in [
            "http://localhost:6274/",
            "*",
            "http://Example.com",
            "null",
            "http://a/b",
        ] {
            assert!(check_origin(bad).is_err(), "{bad} should be rejected");
        }
    }
}
