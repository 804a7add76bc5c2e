//! The address a request comes from, for rate limits, metadata-fetch caps and audit events.
//!
//! Without configuration it is the TCP peer. Behind a load balancer or reverse proxy every
//! request has the proxy as its peer, so the operator lists the proxies (`[proxy]
//! trusted_addresses`): a request whose peer is one of them is attributed to the address the
//! proxy reports in the configured header. The header is read from the right, where the nearest
//! proxy appended what it saw, and the first address that is not a trusted proxy is the client;
//! everything left of it was written by the client and is not believed. A header from a peer
//! that is not a trusted proxy is ignored.
//!
//! Rate limits then count an IPv4 address, or the /64 of an IPv6 address (one subscriber
//! usually holds a whole /64, so counting single IPv6 addresses would give each of them
//! billions of allowances).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use ipnet::IpNet;
use serde::Deserialize;

use crate::state::AppState;

/// `[proxy] client_address_header` when the file does not set it.
pub const DEFAULT_CLIENT_ADDRESS_HEADER: &str = X_FORWARDED_FOR;
const X_FORWARDED_FOR: &str = "x-forwarded-for";
const FORWARDED: &str = "forwarded";
/// Most entries of `[proxy] trusted_addresses`.
pub const MAX_TRUSTED_ADDRESSES: usize = 256;

/// Which header the trusted proxies write the client address into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`
    XForwardedFor,
    /// RFC 7239: `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"`
    Forwarded,
}

impl AddressHeader {
    fn name(self) -> &'static str {
        match self {
            AddressHeader::XForwardedFor => X_FORWARDED_FOR,
            AddressHeader::Forwarded => FORWARDED,
        }
    }
}

/// The reverse proxies whose reports of the client address are believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: AddressHeader,
}

impl Default for TrustedProxies {
    /// No proxy is trusted: every request is attributed to its TCP peer.
    fn default() -> Self {
        TrustedProxies {
            networks: Vec::new(),
            header: AddressHeader::XForwardedFor,
        }
    }
}

/// The `[proxy]` table as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// Addresses or CIDR networks of the reverse proxies in front of the server
    /// (`["10.0.0.0/8", "192.0.2.7"]`). Default: none (the TCP peer is the client).
    #[serde(default)]
    trusted_addresses: Vec<String>,
    /// The header those proxies append the client address to: `x-forwarded-for` or
    /// `forwarded`. Default [`DEFAULT_CLIENT_ADDRESS_HEADER`].
    client_address_header: Option<String>,
}

/// Checks the `[proxy]` table; the error names the field and the entry.
pub fn validate(raw: RawProxy) -> Result<TrustedProxies, (String, String)> {
    let header = match raw
        .client_address_header
        .as_deref()
        .unwrap_or(DEFAULT_CLIENT_ADDRESS_HEADER)
        .to_ascii_lowercase()
        .as_str()
    {
        X_FORWARDED_FOR => AddressHeader::XForwardedFor,
        FORWARDED => AddressHeader::Forwarded,
        other => {
            return Err((
                "proxy.client_address_header".into(),
                format!("`{other}` is neither `{X_FORWARDED_FOR}` nor `{FORWARDED}`"),
            ));
        }
    };
    if raw.trusted_addresses.len() > MAX_TRUSTED_ADDRESSES {
        return Err((
            "proxy.trusted_addresses".into(),
            format!("at most {MAX_TRUSTED_ADDRESSES} entries"),
        ));
    }
    let mut networks = Vec::new();
    for (i, entry) in raw.trusted_addresses.iter().enumerate() {
        let network = match entry.parse::<IpNet>() {
            Ok(n) => n,
            Err(_) => match entry.parse::<IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => {
                    return Err((
                        format!("proxy.trusted_addresses[{i}]"),
                        format!("`{entry}` is neither an IP address nor a CIDR network"),
                    ));
                }
            },
        };
        networks.push(network.trunc());
    }
    Ok(TrustedProxies { networks, header })
}

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: the TCP `peer`, unless the peer is a trusted proxy and the
    /// configured header names an address beyond it.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops = hops(self.header, headers);
        let mut nearest = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.trusts(*ip) => nearest = *ip,
                Some(ip) => return *ip,
                // Past an entry that names no address, nothing further can be attributed: the
                // request counts against the nearest trusted hop, never against an address
                // the client could have chosen.
                None => return nearest,
            }
        }
        nearest
    }
}

/// The addresses in every instance of `header`, in order (`None` for an entry that names none:
/// `unknown`, an obfuscated identifier, garbage).
fn hops(header: AddressHeader, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut out = Vec::new();
    for value in headers.get_all(header.name()) {
        let Ok(text) = value.to_str() else {
            out.push(None);
            continue;
        };
        for element in text.split(',') {
            out.push(match header {
                AddressHeader::XForwardedFor => parse_node(element),
                AddressHeader::Forwarded => forwarded_for(element),
            });
        }
    }
    out
}

/// The `for=` node of one `Forwarded` element (RFC 7239 §4).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        parse_node(value)
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

/// What one client is counted as by rate limits and fetch caps: an IPv4 address, or the /64
/// of an IPv6 address.
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
    }
}

/// The client address of a request (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(IpAddr);

impl ClientAddress {
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, StatusCode> {
        let ConnectInfo(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .copied()
            .ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
        Ok(ClientAddress(
            state.config.proxy.client_address(peer.ip(), &parts.headers),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(trusted: &[&str], header: &str) -> TrustedProxies {
        validate(RawProxy {
            trusted_addresses: trusted.iter().map(|s| s.to_string()).collect(),
            client_address_header: Some(header.into()),
        })
        .unwrap()
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let p = TrustedProxies::default();
        let h = headers("x-forwarded-for", &["203.0.113.9"]);
        assert_eq!(p.client_address(ip("192.0.2.1"), &h), ip("192.0.2.1"));
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_ignored() {
        let p = proxies(&["10.0.0.0/8"], "x-forwarded-for");
        let h = headers("x-forwarded-for", &["203.0.113.9"]);
        assert_eq!(p.client_address(ip("192.0.2.1"), &h), ip("192.0.2.1"));
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "192.0.2.7"], "x-forwarded-for");
        // The client wrote the spoofed first entry itself; the proxies appended the rest.
        let h = headers(
            "x-forwarded-for",
            &["1.1.1.1, 203.0.113.9", "192.0.2.7, 10.1.2.3"],
        );
        assert_eq!(p.client_address(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        // Only trusted hops: the leftmost one is as far as can be told.
        let h = headers("x-forwarded-for", &["10.9.9.9, 10.1.2.3"]);
        assert_eq!(p.client_address(ip("10.0.0.1"), &h), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn an_entry_without_an_address_stops_the_walk_at_the_nearest_trusted_hop() {
        let p = proxies(&["10.0.0.0/8"], "x-forwarded-for");
        let h = headers("x-forwarded-for", &["203.0.113.9, garbage, 10.1.2.3"]);
        assert_eq!(p.client_address(ip("10.0.0.1"), &h), ip("10.1.2.3"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        let p = proxies(&["10.0.0.0/8", "2001:db8:ffff::/48"], "x-forwarded-for");
        let h = headers("x-forwarded-for", &["[2001:db8::5]:443"]);
        assert_eq!(p.client_address(ip("10.0.0.1"), &h), ip("2001:db8::5"));
        let h = headers("x-forwarded-for", &["203.0.113.9:5555"]);
        assert_eq!(p.client_address(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        // A dual-stack listener sees IPv4 proxies as mapped IPv6 peers.
        let h = headers("x-forwarded-for", &["::ffff:203.0.113.9"]);
        assert_eq!(
            p.client_address(ip("::ffff:10.0.0.1"), &h),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_forwarded_header_is_read_by_its_for_parameter() {
        let p = proxies(&["10.0.0.0/8"], "forwarded");
        let h = headers(
            "forwarded",
            &[
                "for=1.1.1.1, For=\"[2001:db8:cafe::17]:4711\";proto=https",
                "for=10.2.2.2;by=10.0.0.1",
            ],
        );
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &h),
            ip("2001:db8:cafe::17")
        );
        let hidden = headers("forwarded", &["for=203.0.113.9, for=_hidden"]);
        assert_eq!(p.client_address(ip("10.0.0.1"), &hidden), ip("10.0.0.1"));
        let unknown = headers("forwarded", &["for=unknown"]);
        assert_eq!(p.client_address(ip("10.0.0.1"), &unknown), ip("10.0.0.1"));
        // With `forwarded` configured, X-Forwarded-For is not read (the proxy does not set it,
        // so the client could).
        let xff = headers("x-forwarded-for", &["203.0.113.9"]);
        assert_eq!(p.client_address(ip("10.0.0.1"), &xff), ip("10.0.0.1"));
    }

    #[test]
    fn invalid_proxy_settings_are_named() {
        let bad = |trusted: &[&str], header: Option<&str>| {
            validate(RawProxy {
                trusted_addresses: trusted.iter().map(|s| s.to_string()).collect(),
                client_address_header: header.map(str::to_string),
            })
            .unwrap_err()
            .0
        };
        assert_eq!(bad(&["10.0.0.0/33"], None), "proxy.trusted_addresses[0]");
        assert_eq!(
            bad(&["10.0.0.1", "proxy.local"], None),
            "proxy.trusted_addresses[1]"
        );
        assert_eq!(bad(&[], Some("x-real-ip")), "proxy.client_address_header");
        let host_bits = proxies(&["10.1.2.3/8"], "X-Forwarded-For");
        assert!(host_bits.trusts(ip("10.200.0.1")));
    }

    #[test]
    fn clients_are_counted_by_ipv4_address_or_ipv6_64() {
        assert_eq!(rate_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_ne!(rate_key(ip("192.0.2.7")), rate_key(ip("192.0.2.8")));
        assert_eq!(
            rate_key(ip("2001:db8:1:2::1")),
            rate_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            rate_key(ip("2001:db8:1:2::1")),
            rate_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(rate_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }
}
