//! Client ID Metadata Documents: the `client_id` is an https URL whose document describes the
//! client. Validation of the URL and the document is pure; [`Fetcher`] does the guarded fetch.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use url::{Host, Url};

use crate::client_assertion::{self, Jwks};
use crate::client_metadata;
use crate::oauth::{AuthMethod, GrantType};
use crate::redirect_uri::PrivateUseSchemes;
use crate::ssrf;

/// Largest accepted document.
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// Longest time a document is cached, whatever its `Cache-Control` says.
pub const MAX_CACHE: Duration = Duration::from_secs(24 * 3600);
const MAX_CACHE_ENTRIES: usize = 1024;
/// Document fetches (lookup, connect, read) in progress at once; further ones wait for a slot.
pub const MAX_CONCURRENT_FETCHES: usize = 16;
/// Document fetches from one host in progress at once. Further ones are refused at once rather
/// than queued, so slow documents on one host cannot take the global slots from other hosts.
pub const MAX_CONCURRENT_FETCHES_PER_HOST: usize = 2;
/// Document fetches one requesting address (an IPv6 /64) may cause at once; further ones are
/// refused at once, so one requester naming many slow hosts cannot take every global slot.
pub const MAX_CONCURRENT_FETCHES_PER_REQUESTER: usize = 4;
/// How long a failed lookup answers with the same error without a new fetch, by default: never.
/// MCP clients expect a fixed document to work on the next attempt (the MCP authorization
/// requirements say failures are not cached); operators under a flood of broken or slow URLs
/// can opt in to a short window (`client_metadata_failure_cache_secs`), and the per-host and
/// per-requester caps bound such a flood either way.
pub const FAILURE_CACHE: Duration = Duration::from_secs(0);
/// Shortest time between two fetches of one `jwks_uri` forced by an assertion whose `kid` the
/// cached keys do not hold. A client that rotated its keys is served by one refetch; a flood of
/// made-up `kid`s causes at most one fetch per interval.
pub const MIN_JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// Does this client_id name a metadata document (rather than a registered client)?
pub fn is_metadata_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// Where the document may be fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Normal mode: https, public addresses only.
    Public(Url),
    /// Development switch: http on a loopback host, loopback addresses only.
    InsecureLocalhost(Url),
}

/// Validates a client_id URL per the Client ID Metadata Document draft.
pub fn validate_client_id_url(
    client_id: &str,
    allow_insecure_localhost: bool,
) -> Result<Target, String> {
    if client_id.len() > 2000 {
        return Err("client_id URL is too long".into());
    }
    let url = Url::parse(client_id).map_err(|e| format!("client_id is not a valid URL: {e}"))?;
    if url.fragment().is_some() {
        return Err("client_id URL must not contain a fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("client_id URL must not contain user information".into());
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err("client_id URL must have a path".into());
    }
    let raw_path = client_id
        .split_once("://")
        .map_or("", |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
    if raw_path
        .split(['/', '?'])
        .any(|seg| seg == "." || seg == "..")
    {
        return Err("client_id URL must not contain dot segments".into());
    }
    if url.as_str() != client_id {
        return Err("client_id URL must be in normalized form".into());
    }
    let host = url.host().ok_or("client_id URL must have a host")?;
    match url.scheme() {
        "https" => Ok(Target::Public(url)),
        "http" => {
            let loopback = match host {
                Host::Domain(d) => d == "localhost",
                Host::Ipv4(ip) => ip.is_loopback(),
                Host::Ipv6(ip) => ip.is_loopback(),
            };
            if allow_insecure_localhost && loopback {
                Ok(Target::InsecureLocalhost(url))
            } else if loopback {
                Err("client_id URL must use https (http://localhost documents need the allow_insecure_localhost_client_metadata development switch)".into())
            } else {
                Err("client_id URL must use https".into())
            }
        }
        _ => Err("client_id URL must use https".into()),
    }
}

/// What the server keeps of a validated document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMetadata {
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub allows_authorization_code: bool,
    pub allows_refresh: bool,
    /// `none` or `private_key_jwt`.
    pub auth_method: AuthMethod,
    /// The declared `token_endpoint_auth_signing_alg`, for `private_key_jwt`.
    pub signing_alg: Option<String>,
    /// The client's public keys, for `private_key_jwt`.
    pub keys: Option<KeySource>,
}

/// Where a `private_key_jwt` client's public keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// In the document (`jwks`) or the configuration.
    Inline(Jwks),
    /// At a `jwks_uri`, fetched like a metadata document (see [`Fetcher::jwks`]).
    Uri(String),
}

#[derive(Deserialize)]
struct Document {
    client_id: Option<String>,
    client_name: Option<String>,
    redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    application_type: Option<String>,
    client_secret: Option<serde_json::Value>,
    client_secret_expires_at: Option<serde_json::Value>,
    token_endpoint_auth_signing_alg: Option<String>,
    jwks_uri: Option<String>,
    jwks: Option<serde_json::Value>,
}

/// Checks a document's `jwks_uri`: https, or http on a loopback host when the document itself
/// was served that way (only possible with the development switch on). Its addresses are
/// checked when it is fetched, as the document's were.
pub fn validate_jwks_uri(uri: &str, document_url: &str) -> Result<Target, String> {
    if uri.len() > 2000 {
        return Err("jwks_uri is too long".into());
    }
    let url = Url::parse(uri).map_err(|e| format!("jwks_uri is not a valid URL: {e}"))?;
    if url.fragment().is_some() {
        return Err("jwks_uri must not contain a fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("jwks_uri must not contain user information".into());
    }
    let host = url.host().ok_or("jwks_uri must have a host")?;
    let loopback = match host {
        Host::Domain(d) => d == "localhost",
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    };
    let document_is_local = document_url.starts_with("http://");
    match url.scheme() {
        "https" => Ok(Target::Public(url)),
        "http" if loopback && document_is_local => Ok(Target::InsecureLocalhost(url)),
        _ => Err("jwks_uri must use https".into()),
    }
}

/// The keys of a document that declares `private_key_jwt`: exactly one of `jwks_uri` and
/// `jwks` (RFC 7591 §2).
fn document_keys(url: &str, doc: &Document) -> Result<KeySource, String> {
    match (&doc.jwks_uri, &doc.jwks) {
        (Some(uri), None) => {
            validate_jwks_uri(uri, url)?;
            Ok(KeySource::Uri(uri.clone()))
        }
        (None, Some(jwks)) => Jwks::from_value(jwks)
            .map(KeySource::Inline)
            .map_err(|e| format!("metadata document jwks: {e}")),
        (Some(_), Some(_)) => {
            Err("metadata document must not contain both jwks_uri and jwks".into())
        }
        (None, None) => Err(
            "metadata document declares private_key_jwt but has neither jwks_uri nor jwks".into(),
        ),
    }
}

/// Validates a fetched document against the URL it was fetched from.
pub fn validate_document(url: &str, body: &[u8]) -> Result<ClientMetadata, String> {
    let doc: Document = serde_json::from_slice(body)
        .map_err(|e| format!("metadata document is not valid JSON: {e}"))?;
    match doc.client_id.as_deref() {
        Some(id) if id == url => {}
        Some(_) => return Err("metadata document client_id does not equal its URL".into()),
        None => return Err("metadata document has no client_id".into()),
    }
    if doc.client_secret.is_some() || doc.client_secret_expires_at.is_some() {
        return Err("metadata document must not contain a client secret".into());
    }
    let auth_method = match doc.token_endpoint_auth_method.as_deref() {
        None | Some("none") => AuthMethod::None,
        Some("private_key_jwt") => AuthMethod::PrivateKeyJwt,
        Some(m @ ("client_secret_basic" | "client_secret_post" | "client_secret_jwt")) => {
            return Err(format!(
                "shared-secret authentication `{m}` is not allowed for metadata document clients"
            ));
        }
        Some(m) => return Err(format!("token_endpoint_auth_method `{m}` is not supported")),
    };
    let (keys, signing_alg) = if auth_method == AuthMethod::PrivateKeyJwt {
        let signing_alg = match doc.token_endpoint_auth_signing_alg.as_deref() {
            None => None,
            Some(alg) if client_assertion::SIGNING_ALGS.contains(&alg) => Some(alg.to_string()),
            Some(alg) => {
                return Err(format!(
                    "token_endpoint_auth_signing_alg `{alg}` is not supported (supported: {})",
                    client_assertion::SIGNING_ALGS.join(", ")
                ));
            }
        };
        (Some(document_keys(url, &doc)?), signing_alg)
    } else {
        (None, None)
    };
    // Unsupported grant and response types are dropped, as at registration. The document's
    // redirect URIs pass the same structural checks; the operator's narrowing of private-use
    // schemes applies when one of them is used at `/authorize`, so one URI the operator does not
    // accept does not make the client's other URIs unusable.
    let grant_types = client_metadata::grant_types(doc.grant_types.as_deref())
        .map_err(|e| e.description().to_string())?;
    client_metadata::response_types(doc.response_types.as_deref())
        .map_err(|e| e.description().to_string())?;
    let redirect_uris = doc.redirect_uris.unwrap_or_default();
    if redirect_uris.is_empty() {
        return Err("metadata document has no redirect_uris".into());
    }
    client_metadata::redirect_uris(
        &redirect_uris,
        doc.application_type.as_deref(),
        &PrivateUseSchemes::Any,
    )
    .map_err(|e| format!("redirect_uris: {}", e.description()))?;
    if let Some(name) = &doc.client_name {
        crate::clients::check_client_name(name)?;
    }
    let client_name = doc.client_name.map(|n| n.chars().take(200).collect());
    Ok(ClientMetadata {
        client_id: url.to_string(),
        client_name,
        redirect_uris,
        allows_authorization_code: grant_types.contains(&GrantType::AuthorizationCode),
        allows_refresh: grant_types.contains(&GrantType::RefreshToken),
        auth_method,
        signing_alg,
        keys,
    })
}

/// Cache lifetime from a `Cache-Control` header value: `max-age`, unless `no-store`/`no-cache`.
pub fn cache_lifetime(cache_control: Option<&str>) -> Option<Duration> {
    let value = cache_control?;
    let mut max_age = None;
    for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-store" || directive == "no-cache" || directive == "private" {
            return None;
        }
        if let Some(v) = directive.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s).min(MAX_CACHE))
}

/// The answer of a [`Resolve`] lookup.
pub type Lookup<'a> = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Turns the host name of a `client_id` URL into addresses. The fetcher asks it exactly once
/// per fetch, checks every answer, and connects only to those checked addresses.
pub trait Resolve: Send + Sync {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a>;
}

/// The system resolver (`getaddrinfo` through tokio).
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// The only resolver the document's HTTP client has: it answers the vetted host name with the
/// vetted addresses and refuses every other name, so the connection cannot trigger a second
/// DNS lookup whose answer was never checked (DNS rebinding).
struct Pinned {
    host: String,
    addrs: Vec<SocketAddr>,
}

impl reqwest::dns::Resolve for Pinned {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let answer: Result<reqwest::dns::Addrs, Box<dyn std::error::Error + Send + Sync>> =
            if name.as_str().eq_ignore_ascii_case(&self.host) {
                Ok(Box::new(self.addrs.clone().into_iter()))
            } else {
                Err(format!("refusing to resolve unvetted host {}", name.as_str()).into())
            };
        Box::pin(std::future::ready(answer))
    }
}

/// Fetches documents with SSRF protection, caches successes for as long as their
/// `Cache-Control` allows and failures for a short, fixed time.
pub struct Fetcher {
    allow_insecure_localhost: bool,
    timeout: Duration,
    resolver: Arc<dyn Resolve>,
    cache: Mutex<HashMap<String, (ClientMetadata, Instant)>>,
    failure_cache_lifetime: Duration,
    failures: Mutex<HashMap<String, (String, Instant)>>,
    fetch_slots: tokio::sync::Semaphore,
    fetches_per_host: FetchCounts<String>,
    fetches_per_requester: FetchCounts<IpAddr>,
    jwks_cache: Mutex<HashMap<String, (Jwks, Instant)>>,
    /// When each `jwks_uri` was last refetched for an unknown `kid`.
    jwks_refetched: Mutex<HashMap<String, Instant>>,
}

/// Fetches in progress per key (host or requesting address).
type FetchCounts<K> = Arc<Mutex<HashMap<K, usize>>>;

/// One of a key's fetch slots, given back when dropped.
struct FetchSlot<K: std::hash::Hash + Eq> {
    key: K,
    counts: FetchCounts<K>,
}

impl<K: std::hash::Hash + Eq + Clone> FetchSlot<K> {
    /// A slot for `key`, or `None` when it already has `limit` fetches in progress.
    fn take(counts: &FetchCounts<K>, key: K, limit: usize) -> Option<Self> {
        let mut guard = counts.lock().ok()?;
        let count = guard.entry(key.clone()).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(FetchSlot {
            key,
            counts: counts.clone(),
        })
    }
}

impl<K: std::hash::Hash + Eq> Drop for FetchSlot<K> {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.counts.lock()
            && let Some(count) = guard.get_mut(&self.key)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                guard.remove(&self.key);
            }
        }
    }
}

// The unit one requester is counted in: an IPv4 address, or the /64 of an IPv6 address.
use crate::client_address::rate_key as requester_key;

impl Fetcher {
    /// A fetcher using the system resolver.
    pub fn new(allow_insecure_localhost: bool, timeout: Duration) -> Self {
        Self::with_resolver(allow_insecure_localhost, timeout, Arc::new(SystemResolver))
    }

    pub fn with_resolver(
        allow_insecure_localhost: bool,
        timeout: Duration,
        resolver: Arc<dyn Resolve>,
    ) -> Self {
        Fetcher {
            allow_insecure_localhost,
            timeout,
            resolver,
            cache: Mutex::new(HashMap::new()),
            failure_cache_lifetime: FAILURE_CACHE,
            failures: Mutex::new(HashMap::new()),
            fetch_slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES),
            fetches_per_host: Arc::new(Mutex::new(HashMap::new())),
            fetches_per_requester: Arc::new(Mutex::new(HashMap::new())),
            jwks_cache: Mutex::new(HashMap::new()),
            jwks_refetched: Mutex::new(HashMap::new()),
        }
    }

    /// How long a failure is remembered instead of [`FAILURE_CACHE`]; zero remembers none.
    pub fn with_failure_cache(mut self, lifetime: Duration) -> Self {
        self.failure_cache_lifetime = lifetime;
        self
    }

    /// The addresses of a URL's host: an IP literal as written, a name through the resolver
    /// (once).
    async fn addresses(&self, url: &Url, port: u16, what: &str) -> Result<Vec<SocketAddr>, String> {
        match url.host() {
            Some(Host::Ipv4(ip)) => Ok(vec![SocketAddr::new(IpAddr::V4(ip), port)]),
            Some(Host::Ipv6(ip)) => Ok(vec![SocketAddr::new(IpAddr::V6(ip), port)]),
            Some(Host::Domain(name)) => {
                tokio::time::timeout(self.timeout, self.resolver.lookup(name, port))
                    .await
                    .map_err(|_| format!("resolving the {what} host timed out"))?
                    .map_err(|e| format!("cannot resolve the {what} host: {e}"))
            }
            None => Err(format!("the {what} URL must have a host")),
        }
    }

    fn cached(&self, client_id: &str) -> Option<ClientMetadata> {
        let cache = self.cache.lock().ok()?;
        let (doc, until) = cache.get(client_id)?;
        (Instant::now() < *until).then(|| doc.clone())
    }

    fn remember(&self, doc: &ClientMetadata, lifetime: Duration) {
        if let Ok(mut cache) = self.cache.lock() {
            let now = Instant::now();
            if cache.len() >= MAX_CACHE_ENTRIES {
                cache.retain(|_, (_, until)| *until > now);
            }
            if cache.len() < MAX_CACHE_ENTRIES {
                cache.insert(doc.client_id.clone(), (doc.clone(), now + lifetime));
            }
        }
    }

    fn cached_failure(&self, client_id: &str) -> Option<String> {
        let failures = self.failures.lock().ok()?;
        let (reason, until) = failures.get(client_id)?;
        (Instant::now() < *until).then(|| reason.clone())
    }

    fn remember_failure(&self, client_id: &str, reason: &str) {
        if self.failure_cache_lifetime.is_zero() {
            return;
        }
        if let Ok(mut failures) = self.failures.lock() {
            let now = Instant::now();
            if failures.len() >= MAX_CACHE_ENTRIES {
                failures.retain(|_, (_, until)| *until > now);
            }
            if failures.len() < MAX_CACHE_ENTRIES {
                failures.insert(
                    client_id.to_string(),
                    (reason.to_string(), now + self.failure_cache_lifetime),
                );
            }
        }
    }

    /// Resolves, checks, fetches and validates the document for `client_id`.
    pub async fn resolve(&self, client_id: &str) -> Result<ClientMetadata, String> {
        self.resolve_for(client_id, None).await
    }

    /// [`Fetcher::resolve`] on behalf of `requester`, whose fetches in progress are capped.
    pub async fn resolve_for(
        &self,
        client_id: &str,
        requester: Option<IpAddr>,
    ) -> Result<ClientMetadata, String> {
        let target = validate_client_id_url(client_id, self.allow_insecure_localhost)?;
        if let Some(doc) = self.cached(client_id) {
            return Ok(doc);
        }
        if let Some(reason) = self.cached_failure(client_id) {
            return Err(reason);
        }
        // Anyone can name any URL as client_id: bound the outbound work it can cause at once,
        // per requester and per host first (refusing, so that one requester or one slow host
        // cannot queue up the global slots), then overall. A refusal here says nothing about
        // the document and is not remembered.
        let _requester_slot = match requester {
            Some(ip) => Some(
                FetchSlot::take(
                    &self.fetches_per_requester,
                    requester_key(ip),
                    MAX_CONCURRENT_FETCHES_PER_REQUESTER,
                )
                .ok_or_else(|| {
                    format!(
                        "too many metadata document fetches for your address are in progress \
                         (at most {MAX_CONCURRENT_FETCHES_PER_REQUESTER}); try again shortly"
                    )
                })?,
            ),
            None => None,
        };
        let url = match &target {
            Target::Public(u) | Target::InsecureLocalhost(u) => u,
        };
        let _host_slot = self.host_slot(url, "metadata document")?;
        let _slot = self
            .fetch_slots
            .acquire()
            .await
            .map_err(|_| "the metadata fetcher is shutting down".to_string())?;
        let fetched = self.fetch(client_id, &target).await;
        if let Err(reason) = &fetched {
            self.remember_failure(client_id, reason);
        }
        fetched
    }

    /// One of the host's fetch slots, or a refusal when it has too many fetches in progress.
    fn host_slot(&self, url: &Url, what: &str) -> Result<FetchSlot<String>, String> {
        let host = url.host_str().unwrap_or_default().to_string();
        FetchSlot::take(
            &self.fetches_per_host,
            host,
            MAX_CONCURRENT_FETCHES_PER_HOST,
        )
        .ok_or_else(|| {
            format!(
                "too many {what} fetches from this host are in progress \
                 (at most {MAX_CONCURRENT_FETCHES_PER_HOST}); try again shortly"
            )
        })
    }

    async fn fetch(&self, client_id: &str, target: &Target) -> Result<ClientMetadata, String> {
        let (body, lifetime) = self.get(target, "metadata document").await?;
        let doc = validate_document(client_id, &body)?;
        if let Some(lifetime) = lifetime {
            self.remember(&doc, lifetime);
        }
        Ok(doc)
    }

    /// The keys at a `jwks_uri` (checked by [`validate_jwks_uri`] against the document that
    /// named it), from the cache while its `Cache-Control` allows, else fetched with the same
    /// address checks, limits and caching rules as a document. The flag tells whether they
    /// were fetched just now.
    pub async fn jwks(&self, uri: &str, document_url: &str) -> Result<(Jwks, bool), String> {
        if let Some(jwks) = self.cached_jwks(uri) {
            return Ok((jwks, false));
        }
        self.fetch_jwks(uri, document_url).await.map(|j| (j, true))
    }

    /// Fetches the keys at `uri` again because an assertion named a `kid` the cached keys lack;
    /// `None` when this `jwks_uri` was refetched less than [`MIN_JWKS_REFETCH_INTERVAL`] ago.
    pub async fn refetch_jwks(
        &self,
        uri: &str,
        document_url: &str,
    ) -> Result<Option<Jwks>, String> {
        {
            let mut refetched = self
                .jwks_refetched
                .lock()
                .map_err(|_| "the JWKS refetch table is unavailable".to_string())?;
            let now = Instant::now();
            if refetched
                .get(uri)
                .is_some_and(|at| now.duration_since(*at) < MIN_JWKS_REFETCH_INTERVAL)
            {
                return Ok(None);
            }
            if refetched.len() >= MAX_CACHE_ENTRIES {
                refetched.retain(|_, at| now.duration_since(*at) < MIN_JWKS_REFETCH_INTERVAL);
            }
            refetched.insert(uri.to_string(), now);
        }
        self.fetch_jwks(uri, document_url).await.map(Some)
    }

    fn cached_jwks(&self, uri: &str) -> Option<Jwks> {
        let cache = self.jwks_cache.lock().ok()?;
        let (jwks, until) = cache.get(uri)?;
        (Instant::now() < *until).then(|| jwks.clone())
    }

    async fn fetch_jwks(&self, uri: &str, document_url: &str) -> Result<Jwks, String> {
        let target = validate_jwks_uri(uri, document_url)?;
        let url = match &target {
            Target::Public(u) | Target::InsecureLocalhost(u) => u,
        };
        let _host_slot = self.host_slot(url, "JWKS")?;
        let _slot = self
            .fetch_slots
            .acquire()
            .await
            .map_err(|_| "the metadata fetcher is shutting down".to_string())?;
        let (body, lifetime) = self.get(&target, "JWKS").await?;
        let jwks = Jwks::parse(&body)?;
        if let Some(lifetime) = lifetime
            && let Ok(mut cache) = self.jwks_cache.lock()
        {
            let now = Instant::now();
            if cache.len() >= MAX_CACHE_ENTRIES {
                cache.retain(|_, (_, until)| *until > now);
            }
            if cache.len() < MAX_CACHE_ENTRIES {
                cache.insert(uri.to_string(), (jwks.clone(), now + lifetime));
            }
        }
        Ok(jwks)
    }

    /// GETs `target` after checking every address of its host; answers the body (at most
    /// [`MAX_DOCUMENT_BYTES`]) and how long `Cache-Control` lets it be cached.
    async fn get(
        &self,
        target: &Target,
        what: &str,
    ) -> Result<(Vec<u8>, Option<Duration>), String> {
        let (url, insecure) = match target {
            Target::Public(u) => (u, false),
            Target::InsecureLocalhost(u) => (u, true),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("the {what} URL has no port"))?;
        let addrs = self.addresses(url, port, what).await?;
        let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
        if insecure {
            ssrf::check_loopback(&ips)?;
        } else {
            ssrf::check_public(&ips)?;
        }
        // Connect only to the addresses just checked: the client's resolver knows nothing else.
        let pinned = Pinned {
            host: url.host_str().unwrap_or_default().to_string(),
            addrs,
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .dns_resolver(Arc::new(pinned))
            .user_agent("mcp-auth-server")
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        let mut response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("fetching the {what} failed: {}", without_url(&e)))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!(
                "fetching the {what} returned HTTP {} (redirects are not followed)",
                response.status().as_u16()
            ));
        }
        let too_large = || format!("{what} is larger than {MAX_DOCUMENT_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let cache_control = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading the {what} failed: {}", without_url(&e)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
        }
        Ok((body, cache_lifetime(cache_control.as_deref())))
    }
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "");
    }
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_url_rules() {
        assert!(matches!(
            validate_client_id_url("https://app.example.com/client.json", false),
            Ok(Target::Public(_))
        ));
        for bad in [
            "http://app.example.com/client.json",
            "https://app.example.com",
            "https://app.example.com/",
            "https://app.example.com/client.json#x",
            "https://user:pw@app.example.com/client.json",
            "https://app.example.com/a/../client.json",
            "https://APP.example.com/client.json",
            "http://localhost:3000/client.json",
        ] {
            assert!(validate_client_id_url(bad, false).is_err(), "{bad}");
        }
        assert!(matches!(
            validate_client_id_url("http://localhost:3000/client.json", true),
            Ok(Target::InsecureLocalhost(_))
        ));
        assert!(matches!(
            validate_client_id_url("http://127.0.0.1:3000/client.json", true),
            Ok(Target::InsecureLocalhost(_))
        ));
        assert!(validate_client_id_url("http://example.com/client.json", true).is_err());
    }

    const URL: &str = "https://app.example.com/client.json";

    #[test]
    fn documents_are_checked_against_their_url() {
        let good = br#"{"client_id":"https://app.example.com/client.json","client_name":"App",
            "redirect_uris":["http://127.0.0.1:3000/cb"],"grant_types":["authorization_code","refresh_token"]}"#;
        let doc = validate_document(URL, good).unwrap();
        assert_eq!(doc.client_name.as_deref(), Some("App"));
        assert!(doc.allows_refresh);
        assert!(doc.allows_authorization_code);
        let refresh_only = br#"{"client_id":"https://app.example.com/client.json",
            "redirect_uris":["http://127.0.0.1:3000/cb"],"grant_types":["refresh_token"]}"#;
        assert!(
            !validate_document(URL, refresh_only)
                .unwrap()
                .allows_authorization_code
        );

        let cases: &[&[u8]] = &[
            br#"{"client_id":"https://evil.example/client.json","redirect_uris":["http://127.0.0.1/cb"]}"#,
            br#"{"redirect_uris":["http://127.0.0.1/cb"]}"#,
            br#"{"client_id":"https://app.example.com/client.json","redirect_uris":[]}"#,
            br#"{"client_id":"https://app.example.com/client.json","redirect_uris":["javascript:alert(1)"]}"#,
            br#"{"client_id":"https://app.example.com/client.json","redirect_uris":["http://127.0.0.1/cb"],"client_secret":"s"}"#,
            br#"{"client_id":"https://app.example.com/client.json","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#,
            br#"{"client_id":"https://app.example.com/client.json","redirect_uris":["http://127.0.0.1/cb"],"grant_types":["password"]}"#,
            br#"{"client_id":"https://app.example.com/client.json","redirect_uris":["http://127.0.0.1/cb"],"client_name":"App\u2067x\u2069"}"#,
            b"not json",
        ];
        for body in cases {
            assert!(
                validate_document(URL, body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn private_key_jwt_documents_need_exactly_one_key_source() {
        let with = |extra: &str| {
            let body = format!(
                r#"{{"client_id":"{URL}","redirect_uris":["http://127.0.0.1:3000/cb"],
                "token_endpoint_auth_method":"private_key_jwt"{extra}}}"#
            );
            validate_document(URL, body.as_bytes())
        };
        // ChatGPT's shape: jwks_uri and RS256.
        let doc = with(
            r#","token_endpoint_auth_signing_alg":"RS256","jwks_uri":"https://app.example.com/jwks.json""#,
        )
        .unwrap();
        assert_eq!(doc.auth_method, AuthMethod::PrivateKeyJwt);
        assert_eq!(doc.signing_alg.as_deref(), Some("RS256"));
        assert_eq!(
            doc.keys,
            Some(KeySource::Uri("https://app.example.com/jwks.json".into()))
        );
        let jwk = mcp_auth_test_support::rsa_key("k").public_jwk();
        let inline = with(&format!(r#","jwks":{{"keys":[{jwk}]}}"#)).unwrap();
        assert!(matches!(inline.keys, Some(KeySource::Inline(_))));

        let refusal = |extra: &str| with(extra).unwrap_err();
        assert_eq!(
            refusal(""),
            "metadata document declares private_key_jwt but has neither jwks_uri nor jwks"
        );
        assert!(
            refusal(&format!(
                r#","jwks_uri":"https://app.example.com/jwks.json","jwks":{{"keys":[{jwk}]}}"#
            ))
            .contains("both jwks_uri and jwks")
        );
        assert!(refusal(r#","jwks_uri":"http://app.example.com/jwks.json""#).contains("https"));
        assert!(refusal(r#","jwks":{"keys":[]}"#).contains("no RSA, EC or OKP signing key"));
        assert!(
            refusal(r#","jwks_uri":"https://app.example.com/j","token_endpoint_auth_signing_alg":"HS256""#)
                .contains("`HS256` is not supported")
        );
        // A public client's document has no keys to keep.
        let public = validate_document(
            URL,
            br#"{"client_id":"https://app.example.com/client.json","redirect_uris":["http://127.0.0.1:3000/cb"]}"#,
        )
        .unwrap();
        assert_eq!((public.auth_method, public.keys), (AuthMethod::None, None));
    }

    #[test]
    fn jwks_uris_over_http_are_only_for_local_documents() {
        assert!(matches!(
            validate_jwks_uri("http://127.0.0.1:8/jwks", "http://localhost:9/c.json"),
            Ok(Target::InsecureLocalhost(_))
        ));
        assert!(validate_jwks_uri("http://127.0.0.1:8/jwks", URL).is_err());
        assert!(validate_jwks_uri("http://example.com/jwks", "http://localhost:9/c.json").is_err());
        assert!(validate_jwks_uri("https://u:p@example.com/jwks", URL).is_err());
        assert!(validate_jwks_uri("https://example.com/jwks#k", URL).is_err());
        assert!(validate_jwks_uri("file:///etc/passwd", URL).is_err());
    }

    #[test]
    fn documents_follow_the_registration_rules_for_native_apps() {
        // An app scheme next to loopback, and a grant this server does not serve: accepted,
        // with the unsupported grant dropped.
        let native = br#"{"client_id":"https://app.example.com/client.json",
            "redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback","http://127.0.0.1/cb"],
            "grant_types":["authorization_code","urn:ietf:params:oauth:grant-type:device_code"],
            "response_types":["code","token"],"logo_uri":"https://app.example.com/logo.png"}"#;
        let doc = validate_document(URL, native).unwrap();
        assert!(doc.allows_authorization_code && !doc.allows_refresh);
        assert_eq!(doc.redirect_uris.len(), 2);
        // A document that calls itself a web client may not list loopback or app URIs.
        let web = br#"{"client_id":"https://app.example.com/client.json",
            "application_type":"web","redirect_uris":["http://127.0.0.1/cb"]}"#;
        assert!(
            validate_document(URL, web)
                .unwrap_err()
                .contains("web client")
        );
        let script = br#"{"client_id":"https://app.example.com/client.json",
            "redirect_uris":["javascript:alert(1)"]}"#;
        assert!(
            validate_document(URL, script)
                .unwrap_err()
                .contains("scheme `javascript`")
        );
    }

    #[test]
    fn requesters_are_counted_by_ipv4_address_or_ipv6_64() {
        let key = |s: &str| requester_key(s.parse().unwrap());
        assert_eq!(key("192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn cache_control_is_honoured() {
        assert_eq!(
            cache_lifetime(Some("max-age=60")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            cache_lifetime(Some("public, max-age=600")),
            Some(Duration::from_secs(600))
        );
        assert_eq!(cache_lifetime(Some("max-age=99999999")), Some(MAX_CACHE));
        assert_eq!(cache_lifetime(Some("no-store, max-age=60")), None);
        assert_eq!(cache_lifetime(Some("max-age=0")), None);
        assert_eq!(cache_lifetime(None), None);
    }
}
