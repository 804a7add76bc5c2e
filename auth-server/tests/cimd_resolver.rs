//! The metadata-document fetcher with an injected resolver: names resolving to non-public
//! addresses are refused before any connection, and the fetch connects only to the address
//! that was checked (a second lookup, as in DNS rebinding, is never made).

// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_auth_server::cimd::{Fetcher, Lookup, Resolve};

const HTTPS_ID: &str = "https://app.example.com/client.json";

/// Answers lookups from a script: the n-th lookup gets `answers[n]` (the last one repeats).
struct ScriptedResolver {
    answers: Vec<Vec<SocketAddr>>,
    lookups: AtomicUsize,
    hosts: Mutex<Vec<String>>,
}

impl ScriptedResolver {
    fn new(answers: Vec<Vec<SocketAddr>>) -> Arc<Self> {
        Arc::new(ScriptedResolver {
            answers,
            lookups: AtomicUsize::new(0),
            hosts: Mutex::new(Vec::new()),
        })
    }
    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl Resolve for ScriptedResolver {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a> {
        let n = self.lookups.fetch_add(1, Ordering::SeqCst);
        self.hosts.lock().unwrap().push(host.to_string());
        let answer = self
            .answers
            .get(n)
            .or(self.answers.last())
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut a| {
                if a.port() == 0 {
                    a.set_port(port);
                }
                a
            })
            .collect();
        Box::pin(async move { Ok(answer) })
    }
}

fn addr(s: &str) -> SocketAddr {
    SocketAddr::new(s.parse().unwrap(), 0)
}

/// A TCP listener that counts connections and answers each with `body` as JSON.
async fn counting_server(bind: &str, body: String) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let local = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (local, count)
}

fn document(client_id: &str) -> String {
    serde_json::json!({
        "client_id": client_id,
        "redirect_uris": ["http://127.0.0.1:7777/callback"],
    })
    .to_string()
}

#[tokio::test]
async fn https_names_resolving_to_non_public_addresses_are_rejected_without_connecting() {
    // Something listens on loopback, so a connection attempt would be observable.
    let (local, connections) = counting_server("127.0.0.1:0", document(HTTPS_ID)).await;
    let loopback_with_port = SocketAddr::new(local.ip(), local.port());
    let cases: Vec<(&str, Vec<SocketAddr>)> = vec![
        ("10.0.0.1", vec![addr("10.0.0.1")]),
        ("127.0.0.1", vec![loopback_with_port]),
        ("169.254.169.254", vec![addr("169.254.169.254")]),
        ("::1", vec![addr("::1")]),
        (
            "10.1.2.3",
            vec![
                addr("93.184.216.34"),
                addr("10.1.2.3"),
                addr("2606:4700::1"),
            ],
        ),
        ("fd00::1", vec![addr("2606:4700::1"), addr("fd00::1")]),
    ];
    for (bad, answer) in cases {
        let resolver = ScriptedResolver::new(vec![answer]);
        let fetcher = Fetcher::with_resolver(false, Duration::from_secs(5), resolver.clone())
            .with_failure_cache(Duration::ZERO);
        for attempt in 1..=2 {
            let err = fetcher.resolve(HTTPS_ID).await.unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
            // With failure caching off, every attempt resolves again.
            assert_eq!(resolver.lookups(), attempt, "{bad}");
        }
        assert_eq!(
            resolver.hosts.lock().unwrap().as_slice(),
            ["app.example.com", "app.example.com"]
        );
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_jwks_uri_resolving_to_a_non_public_address_is_rejected_without_connecting() {
    let (local, connections) = counting_server("127.0.0.1:0", r#"{"keys":[]}"#.into()).await;
    let resolver = ScriptedResolver::new(vec![vec![local]]);
    let fetcher = Fetcher::with_resolver(false, Duration::from_secs(5), resolver.clone());
    let err = fetcher
        .jwks("https://keys.example.com/jwks.json", HTTPS_ID)
        .await
        .unwrap_err();
    assert!(err.contains("127.0.0.1"), "{err}");
    assert_eq!(
        resolver.hosts.lock().unwrap().as_slice(),
        ["keys.example.com"]
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_rejected() {
    let resolver = ScriptedResolver::new(vec![vec![]]);
    let fetcher = Fetcher::with_resolver(false, Duration::from_secs(5), resolver.clone());
    let err = fetcher.resolve(HTTPS_ID).await.unwrap_err();
    assert!(err.contains("did not resolve"), "{err}");
}

#[tokio::test]
async fn the_fetch_connects_only_to_the_vetted_address_and_never_resolves_twice() {
    // Development mode (http://localhost) so the fixture needs no TLS; the pinning is the same
    // code path as for https. The first answer is 127.0.0.2 (vetted: loopback); a rebinding
    // resolver would answer 127.0.0.1 afterwards, where a second server waits.
    let Ok(probe) = tokio::net::TcpListener::bind("127.0.0.2:0").await else {
        eprintln!("127.0.0.2 is not available here; skipping");
        return;
    };
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let client_id = format!("http://localhost:{port}/client.json");
    let (vetted, vetted_hits) =
        counting_server(&format!("127.0.0.2:{port}"), document(&client_id)).await;
    let Ok(rebound) = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await else {
        eprintln!("port {port} is taken on 127.0.0.1; skipping");
        return;
    };
    drop(rebound);
    let (_, rebound_hits) =
        counting_server(&format!("127.0.0.1:{port}"), document(&client_id)).await;

    let resolver = ScriptedResolver::new(vec![vec![vetted], vec![addr("127.0.0.1")]]);
    let fetcher = Fetcher::with_resolver(true, Duration::from_secs(5), resolver.clone());
    let doc = fetcher.resolve(&client_id).await.unwrap();
    assert_eq!(doc.client_id, client_id);
    assert_eq!(resolver.lookups(), 1);
    assert_eq!(vetted_hits.load(Ordering::SeqCst), 1);
    assert_eq!(rebound_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failure_is_remembered_briefly_and_the_next_attempt_after_that_can_succeed() {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let client_id = format!("http://localhost:{port}/client.json");
    let (local, hits) = counting_server(&format!("127.0.0.1:{port}"), document(&client_id)).await;
    // First lookup answers a private address (refused in development mode too), the second
    // the loopback fixture.
    let resolver = ScriptedResolver::new(vec![vec![addr("10.0.0.1")], vec![local]]);
    let fetcher = Fetcher::with_resolver(true, Duration::from_secs(5), resolver.clone())
        .with_failure_cache(Duration::from_millis(300));
    let err = fetcher.resolve(&client_id).await.unwrap_err();
    assert!(err.contains("10.0.0.1"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // Within the window the same error comes back without a new lookup.
    assert_eq!(fetcher.resolve(&client_id).await.unwrap_err(), err);
    assert_eq!(resolver.lookups(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let doc = fetcher.resolve(&client_id).await.unwrap();
    assert_eq!(doc.client_id, client_id);
    assert_eq!(resolver.lookups(), 2);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// A resolver whose lookups hang until released.
struct HangingResolver {
    lookups: AtomicUsize,
    release: tokio::sync::Notify,
}

impl Resolve for HangingResolver {
    fn lookup<'a>(&'a self, _host: &'a str, _port: u16) -> Lookup<'a> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            self.release.notified().await;
            Ok(vec![addr("10.0.0.1")])
        })
    }
}

#[tokio::test]
async fn at_most_a_fixed_number_of_fetches_run_at_once() {
    use mcp_auth_server::cimd::MAX_CONCURRENT_FETCHES;
    let resolver = Arc::new(HangingResolver {
        lookups: AtomicUsize::new(0),
        release: tokio::sync::Notify::new(),
    });
    let fetcher = Arc::new(Fetcher::with_resolver(
        false,
        Duration::from_secs(30),
        resolver.clone(),
    ));
    let mut tasks = Vec::new();
    for i in 0..MAX_CONCURRENT_FETCHES + 5 {
        let fetcher = fetcher.clone();
        tasks.push(tokio::spawn(async move {
            fetcher
                .resolve(&format!("https://app{i}.example.com/client.json"))
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        resolver.lookups.load(Ordering::SeqCst),
        MAX_CONCURRENT_FETCHES
    );
    // Released, every fetch gets its turn (and is refused for the private address).
    while tasks.iter().any(|t| !t.is_finished()) {
        resolver.release.notify_waiters();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap_err().contains("10.0.0.1"));
    }
    assert_eq!(
        resolver.lookups.load(Ordering::SeqCst),
        MAX_CONCURRENT_FETCHES + 5
    );
}

#[tokio::test]
async fn failures_are_not_remembered_by_default() {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let client_id = format!("http://localhost:{port}/client.json");
    let (local, hits) = counting_server(
        &format!("127.0.0.1:{port}"),
        document("http://localhost/other.json"),
    )
    .await;
    let resolver = ScriptedResolver::new(vec![vec![local], vec![local]]);
    let fetcher = Fetcher::with_resolver(true, Duration::from_secs(5), resolver.clone());
    let first = fetcher.resolve(&client_id).await.unwrap_err();
    let second = fetcher.resolve(&client_id).await.unwrap_err();
    assert_eq!(second, first);
    // A client that fixed its document in between would have been served: both attempts fetched.
    assert_eq!(resolver.lookups(), 2);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failing_url_is_fetched_once_within_a_configured_failure_window() {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let client_id = format!("http://localhost:{port}/client.json");
    // The document names another URL, so validation fails after a real fetch.
    let (local, hits) = counting_server(
        &format!("127.0.0.1:{port}"),
        document("http://localhost/other.json"),
    )
    .await;
    let resolver = ScriptedResolver::new(vec![vec![local]]);
    let fetcher = Fetcher::with_resolver(true, Duration::from_secs(5), resolver.clone())
        .with_failure_cache(Duration::from_secs(30));
    let first = fetcher.resolve(&client_id).await.unwrap_err();
    assert!(first.contains("does not equal its URL"), "{first}");
    let second = fetcher.resolve(&client_id).await.unwrap_err();
    assert_eq!(second, first);
    assert_eq!(resolver.lookups(), 1);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // The cache is keyed by the exact URL: another document on the host is fetched.
    let other = format!("http://localhost:{port}/other.json");
    let _ = fetcher.resolve(&other).await;
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

/// A server that accepts connections, counts them and never answers.
async fn silent_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (local, count)
}

#[tokio::test]
async fn fetches_beyond_the_per_host_cap_are_refused_at_once() {
    use mcp_auth_server::cimd::MAX_CONCURRENT_FETCHES_PER_HOST;
    let (slow, connections) = silent_server().await;
    let resolver = ScriptedResolver::new(vec![vec![slow]]);
    let fetcher = Arc::new(Fetcher::with_resolver(
        true,
        Duration::from_secs(30),
        resolver.clone(),
    ));
    let excess = 3;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..MAX_CONCURRENT_FETCHES_PER_HOST + excess {
        let fetcher = fetcher.clone();
        let url = format!("http://localhost:{}/client{i}.json", slow.port());
        tasks.push(tokio::spawn(async move { fetcher.resolve(&url).await }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let finished = tasks.iter().filter(|t| t.is_finished()).count();
    assert_eq!(finished, excess, "the excess fetches do not wait");
    let mut refused = 0;
    let mut pending = Vec::new();
    for t in tasks {
        if t.is_finished() {
            let err = t.await.unwrap().unwrap_err();
            assert!(err.contains("too many metadata document fetches"), "{err}");
            refused += 1;
        } else {
            pending.push(t);
        }
    }
    assert_eq!(refused, excess);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        MAX_CONCURRENT_FETCHES_PER_HOST
    );
    // Another host still gets a slot while this one is saturated.
    let (other, other_hits) =
        counting_server("127.0.0.1:0", document("http://127.0.0.1/x.json")).await;
    let _ = fetcher
        .resolve(&format!("http://127.0.0.1:{}/x.json", other.port()))
        .await;
    assert_eq!(other_hits.load(Ordering::SeqCst), 1);
    for t in pending {
        t.abort();
    }
}

#[tokio::test]
async fn fetches_beyond_the_per_requester_cap_are_refused_at_once() {
    use mcp_auth_server::cimd::MAX_CONCURRENT_FETCHES_PER_REQUESTER;
    let resolver = Arc::new(HangingResolver {
        lookups: AtomicUsize::new(0),
        release: tokio::sync::Notify::new(),
    });
    let fetcher = Arc::new(Fetcher::with_resolver(
        false,
        Duration::from_secs(30),
        resolver.clone(),
    ));
    let busy: std::net::IpAddr = "203.0.113.9".parse().unwrap();
    let excess = 2;
    // Each on its own host, so only the per-requester cap applies.
    let mut tasks = Vec::new();
    for i in 0..MAX_CONCURRENT_FETCHES_PER_REQUESTER + excess {
        let fetcher = fetcher.clone();
        tasks.push(tokio::spawn(async move {
            fetcher
                .resolve_for(
                    &format!("https://app{i}.example.com/client.json"),
                    Some(busy),
                )
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        resolver.lookups.load(Ordering::SeqCst),
        MAX_CONCURRENT_FETCHES_PER_REQUESTER
    );
    let mut refused = 0;
    let mut pending = Vec::new();
    for t in tasks {
        if t.is_finished() {
            let err = t.await.unwrap().unwrap_err();
            assert!(err.contains("for your address"), "{err}");
            refused += 1;
        } else {
            pending.push(t);
        }
    }
    assert_eq!(refused, excess);
    // Another requester is not held up by the busy one.
    let other = fetcher.clone();
    let other_task = tokio::spawn(async move {
        other
            .resolve_for(
                "https://other.example.com/client.json",
                Some("198.51.100.1".parse().unwrap()),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        resolver.lookups.load(Ordering::SeqCst),
        MAX_CONCURRENT_FETCHES_PER_REQUESTER + 1
    );
    other_task.abort();
    for t in pending {
        t.abort();
    }
}
