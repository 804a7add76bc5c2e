//! Address filter for outbound fetches of Client ID Metadata Documents (SSRF protection).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address may not be contacted, or `None` when it is a public unicast address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified or \"this network\" address")
    } else if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_private() {
        Some("private address")
    } else if ip.is_link_local() {
        Some("link-local address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT) address")
    } else if ip.is_multicast() {
        Some("multicast address")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved address")
    } else if (a == 192 && b == 0 && c == 0) || (a == 198 && (b == 18 || b == 19)) {
        Some("special-purpose address")
    } else if ip.is_documentation() {
        Some("documentation address")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        // ::ffff:a.b.c.d reaches the IPv4 address; judge it as such.
        return forbidden_v4(v4);
    }
    let segments = ip.segments();
    let first = segments.first().copied().unwrap_or(0);
    let second = segments.get(1).copied().unwrap_or(0);
    let zero = |range: std::ops::Range<usize>| {
        segments
            .get(range)
            .is_some_and(|s| s.iter().all(|x| *x == 0))
    };
    if ip.is_unspecified() {
        Some("unspecified address")
    } else if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_multicast() {
        Some("multicast address")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique-local address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local address")
    } else if first & 0xffc0 == 0xfec0 {
        Some("site-local address")
    } else if first == 0x2001 && second == 0x0db8 {
        Some("documentation address")
    } else if zero(0..6) {
        // IPv4-compatible ::a.b.c.d is deprecated (RFC 4291) and no public host is published
        // that way, so even a public embedded address is refused.
        forbidden_v4(last_32_bits(ip)).or(Some("IPv4-compatible address"))
    } else if zero(0..4) && segments.get(4) == Some(&0xffff) && zero(5..6) {
        // IPv4-translated ::ffff:0:a.b.c.d (SIIT) reaches the IPv4 address.
        forbidden_v4(last_32_bits(ip))
    } else if first == 0x0064 && second == 0xff9b {
        forbidden_nat64(ip)
    } else if first == 0x2002 {
        // 6to4 embeds an IPv4 address in bits 16..48
        let o = ip.octets();
        let v4 = Ipv4Addr::new(o[2], o[3], o[4], o[5]);
        forbidden_v4(v4).map(|_| "6to4 address embedding a non-public IPv4 address")
    } else if first == 0x2001 && second == 0 {
        forbidden_teredo(ip)
    } else {
        None
    }
}

fn last_32_bits(ip: Ipv6Addr) -> Ipv4Addr {
    let o = ip.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

/// A NAT64 translator forwards to the IPv4 address embedded in the IPv6 one. The well-known
/// prefix `64:ff9b::/96` puts it in the last 32 bits. The local-use prefix `64:ff9b:1::/48`
/// (RFC 8215) leaves the prefix length to the operator, and with it where the IPv4 address
/// sits (RFC 6052 allows /48 to /96), so only the plain `64:ff9b:1::a.b.c.d` layout, whose
/// other readings all land in 0.0.0.0/8, is judged by its embedded address; any other address
/// in the local-use range, or elsewhere in the unassigned rest of `64:ff9b::/32`, is refused.
fn forbidden_nat64(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    let middle_is_zero = segments
        .get(3..6)
        .is_some_and(|s| s.iter().all(|x| *x == 0));
    match segments.get(2) {
        Some(0 | 1) if middle_is_zero => forbidden_v4(last_32_bits(ip))
            .map(|_| "NAT64 address embedding a non-public IPv4 address"),
        Some(1) => Some("local-use NAT64 address whose IPv4 address cannot be located"),
        _ => Some("reserved NAT64 address"),
    }
}

/// Teredo (`2001::/32`, RFC 4380) reaches the client through its NAT's IPv4 address, stored
/// in the last 32 bits inverted, by way of the server whose IPv4 address is in bits 32..64.
/// Both must be public.
fn forbidden_teredo(ip: Ipv6Addr) -> Option<&'static str> {
    let o = ip.octets();
    let server = Ipv4Addr::new(o[4], o[5], o[6], o[7]);
    let client = Ipv4Addr::from(!u32::from(last_32_bits(ip)));
    forbidden_v4(server)
        .or(forbidden_v4(client))
        .map(|_| "Teredo address embedding a non-public IPv4 address")
}

/// Checks every resolved address; one bad address rejects the whole name, so a name cannot
/// mix a public and a private answer.
pub fn check_public(addresses: &[IpAddr]) -> Result<(), String> {
    if addresses.is_empty() {
        return Err("the host name did not resolve".into());
    }
    for ip in addresses {
        if let Some(reason) = forbidden_reason(*ip) {
            return Err(format!("the host resolves to {ip}, a {reason}"));
        }
    }
    Ok(())
}

/// Development mode for `http://localhost` documents: every address must be loopback.
pub fn check_loopback(addresses: &[IpAddr]) -> Result<(), String> {
    if addresses.is_empty() {
        return Err("the host name did not resolve".into());
    }
    match addresses.iter().find(|ip| !ip.is_loopback()) {
        Some(ip) => Err(format!(
            "the host resolves to {ip}, which is not a loopback address"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_forbidden() {
        for bad in [
            "127.0.0.1",
            "127.5.5.5",
            "0.0.0.0",
            "10.0.0.1",
            "10.255.1.2",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "192.0.2.1",
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "64:ff9b::a00:1",
            "2002:0a00:0001::1",
        ] {
            assert!(
                forbidden_reason(ip(bad)).is_some(),
                "{bad} must be forbidden"
            );
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for good in [
            "93.184.216.34",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:93.184.216.34",
            "2002:5db8:d822::1",
        ] {
            assert_eq!(forbidden_reason(ip(good)), None, "{good} must be allowed");
        }
    }

    /// Each IPv6 form that carries an IPv4 address, built around the given IPv4 address.
    fn embeddings(v4: &str) -> Vec<(&'static str, Ipv6Addr)> {
        let v4: Ipv4Addr = v4.parse().unwrap();
        let [a, b, c, d] = v4.octets();
        let hi = u16::from_be_bytes([a, b]);
        let lo = u16::from_be_bytes([c, d]);
        let teredo_server = [0x4136, 0xe378]; // 65.54.227.120, a public Teredo server
        vec![
            ("IPv4-mapped", v4.to_ipv6_mapped()),
            (
                "IPv4-translated",
                Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo),
            ),
            (
                "well-known NAT64",
                Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
            ),
            (
                "local-use NAT64",
                Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, hi, lo),
            ),
            ("6to4", Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1)),
            (
                "Teredo client",
                Ipv6Addr::new(
                    0x2001,
                    0,
                    teredo_server[0],
                    teredo_server[1],
                    0x8000,
                    0x63bf,
                    !hi,
                    !lo,
                ),
            ),
            (
                "Teredo server",
                Ipv6Addr::new(0x2001, 0, hi, lo, 0x8000, 0x63bf, !0x5db8, !0xd822),
            ),
        ]
    }

    #[test]
    fn every_ipv6_form_of_a_non_public_ipv4_address_is_forbidden() {
        for v4 in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "192.168.0.1",
            "100.64.0.1",
        ] {
            for (form, v6) in embeddings(v4) {
                assert!(
                    forbidden_reason(IpAddr::V6(v6)).is_some(),
                    "{form} {v6} embeds {v4} and must be forbidden"
                );
            }
        }
    }

    #[test]
    fn ipv6_forms_of_a_public_ipv4_address_are_allowed() {
        for (form, v6) in embeddings("93.184.216.34") {
            assert_eq!(
                forbidden_reason(IpAddr::V6(v6)),
                None,
                "{form} {v6} embeds a public address"
            );
        }
        // Deprecated, and never how a public host is published.
        assert!(forbidden_reason(ip("::93.184.216.34")).is_some());
    }

    #[test]
    fn nat64_addresses_whose_ipv4_address_cannot_be_located_are_forbidden() {
        for bad in [
            // A /48 or /64 local-use layout: 10.0.0.1 sits in the middle, not at the end.
            "64:ff9b:1:a00:1::",
            "64:ff9b:1:0:a:0:5db8:d822",
            // Unassigned parts of 64:ff9b::/32.
            "64:ff9b:2::5db8:d822",
            "64:ff9b:0:1::5db8:d822",
        ] {
            assert!(
                forbidden_reason(ip(bad)).is_some(),
                "{bad} must be forbidden"
            );
        }
    }

    #[test]
    fn one_private_answer_rejects_the_name() {
        assert!(check_public(&[ip("93.184.216.34")]).is_ok());
        let err = check_public(&[ip("93.184.216.34"), ip("10.1.2.3")]).unwrap_err();
        assert!(err.contains("10.1.2.3"), "{err}");
        assert!(check_public(&[]).is_err());
    }

    #[test]
    fn development_mode_only_accepts_loopback() {
        assert!(check_loopback(&[ip("127.0.0.1"), ip("::1")]).is_ok());
        assert!(check_loopback(&[ip("127.0.0.1"), ip("10.0.0.1")]).is_err());
    }
}
