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
    let embedded_v4 = || {
        let o = ip.octets();
        Ipv4Addr::new(o[12], o[13], o[14], o[15])
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
    } else if first == 0x2001 && segments.get(1) == Some(&0x0db8) {
        Some("documentation address")
    } else if segments.iter().take(6).all(|s| *s == 0) {
        // IPv4-compatible (deprecated) ::a.b.c.d
        forbidden_v4(embedded_v4()).or(Some("IPv4-compatible address"))
    } else if first == 0x0064 && segments.get(1) == Some(&0xff9b) {
        // NAT64 well-known prefix 64:ff9b::/96 embeds an IPv4 address
        forbidden_v4(embedded_v4())
    } else if first == 0x2002 {
        // 6to4 embeds an IPv4 address in bits 16..48
        let s1 = segments.get(1).copied().unwrap_or(0);
        let s2 = segments.get(2).copied().unwrap_or(0);
        let v4 = Ipv4Addr::new((s1 >> 8) as u8, s1 as u8, (s2 >> 8) as u8, s2 as u8);
        forbidden_v4(v4).map(|_| "6to4 address embedding a non-public IPv4 address")
    } else {
        None
    }
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
