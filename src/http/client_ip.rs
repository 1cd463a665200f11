//! Who the client is, for rate limiting: the peer address, or behind trusted proxies the right-most
//! `X-Forwarded-For` hop that is not one of them.
//!
//! Addresses are compared in canonical form: a dual-stack listener on `[::]` sees an IPv4 peer as
//! `::ffff:127.0.0.1`, and a proxy may write hops that way too, while `trusted_proxies` usually names
//! IPv4 networks. Without it the proxy itself would be every client.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};
use ipnet::{IpNet, Ipv4Net};

/// The configured reverse proxies, in canonical form.
#[derive(Debug)]
struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    fn new(nets: &[IpNet]) -> Self {
        Self(nets.iter().copied().map(canonical_net).collect())
    }

    /// `ip` must be canonical.
    fn contain(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }
}

/// Finds the client address of requests, and warns the operator, once, of a proxy it should
/// probably trust.
#[derive(Debug)]
pub(crate) struct ClientAddresses {
    trusted: TrustedProxies,
    warned_untrusted_proxy: AtomicBool,
}

impl ClientAddresses {
    pub(crate) fn new(trusted_proxies: &[IpNet]) -> Self {
        Self {
            trusted: TrustedProxies::new(trusted_proxies),
            warned_untrusted_proxy: AtomicBool::new(false),
        }
    }

    /// The client address of a request, canonical; `None` when the server was started without
    /// connect info.
    pub(crate) fn of(&self, extensions: &Extensions, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
        if forwarded_by_an_untrusted_local_proxy(peer, headers, &self.trusted)
            && !self.warned_untrusted_proxy.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                target: "mcp_oauth",
                "requests from {peer} carry X-Forwarded-For but no proxy is trusted, so every client \
                 behind that proxy shares its address and its rate limits and failure budgets: set \
                 `trusted_proxies` to the proxy's address (for example 127.0.0.1/32)"
            );
        }
        Some(resolve(peer, headers, &self.trusted))
    }
}

/// A request that a reverse proxy on this machine forwarded, with no proxy trusted: the proxy is
/// every client. (A peer elsewhere sending the header proves nothing: anyone can send it.)
fn forwarded_by_an_untrusted_local_proxy(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> bool {
    trusted.0.is_empty()
        && peer.to_canonical().is_loopback()
        && headers.contains_key("x-forwarded-for")
}

fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contain(&peer) {
        return peer;
    }
    // Walk the chain from the nearest hop outwards; the first untrusted hop is the client. A
    // malformed entry ends the walk: anything left of it could be forged.
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|value| value.to_str().unwrap_or("?").rsplit(','));
    let mut client = peer;
    for hop in hops {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !trusted.contain(&client) {
            break;
        }
    }
    client
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it names, so it matches
/// canonical addresses.
fn canonical_net(net: IpNet) -> IpNet {
    let IpNet::V6(v6) = net else {
        return net;
    };
    match (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96)) {
        (Some(v4), Some(prefix)) => Ipv4Net::new(v4, prefix).map_or(net, IpNet::V4),
        _ => net,
    }
}

/// The rate-limit key: IPv6 clients are keyed by their /64, which one subscriber usually holds
/// whole, so rotating addresses within it buys nothing.
pub(crate) fn rate_limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusting(nets: &[&str]) -> TrustedProxies {
        let nets: Vec<IpNet> = nets.iter().map(|net| net.parse().unwrap()).collect();
        TrustedProxies::new(&nets)
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = trusting(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            resolve(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &trusting(&[])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn right_most_untrusted_hop_behind_trusted_proxies() {
        let trusted = trusting(&["10.0.0.0/8"]);
        // The client forged 6.6.6.6; the proxy appended the real address.
        let h = headers(&["6.6.6.6, 198.51.100.7, 10.1.1.1"]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("198.51.100.7"));
        let h = headers(&["6.6.6.6", "198.51.100.7"]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("198.51.100.7"));
        assert_eq!(
            resolve(ip("10.0.0.1"), &headers(&[]), &trusted),
            ip("10.0.0.1")
        );
        let h = headers(&["garbage, 198.51.100.7"]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("198.51.100.7"));
        let h = headers(&["198.51.100.7, garbage"]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.1"));
        // A header value that is not text ends the walk too.
        let mut h = headers(&["6.6.6.6"]);
        h.append(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.1"));
    }

    #[test]
    fn ipv4_mapped_peers_hops_and_networks_are_ipv4() {
        // A dual-stack listener sees the proxy on 127.0.0.1 as ::ffff:127.0.0.1.
        let trusted = trusting(&["127.0.0.0/8"]);
        let h = headers(&["198.51.100.7"]);
        assert_eq!(
            resolve(ip("::ffff:127.0.0.1"), &h, &trusted),
            ip("198.51.100.7")
        );
        // Hops in mapped form: a trusted proxy is skipped, a client is keyed as IPv4.
        let h = headers(&["::ffff:198.51.100.7, ::ffff:127.0.0.2"]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted), ip("198.51.100.7"));
        // An untrusted mapped peer is the client, in IPv4 form.
        assert_eq!(
            resolve(ip("::ffff:203.0.113.9"), &h, &trusted),
            ip("203.0.113.9")
        );
        // A network configured in mapped form matches the IPv4 addresses it names, and only them.
        let trusted = trusting(&["::ffff:10.0.0.0/104"]);
        let h = headers(&["198.51.100.7"]);
        assert_eq!(resolve(ip("10.1.2.3"), &h, &trusted), ip("198.51.100.7"));
        assert_eq!(resolve(ip("11.0.0.1"), &h, &trusted), ip("11.0.0.1"));
        // IPv6 proxies are unaffected.
        let trusted = trusting(&["2001:db8::/32"]);
        assert_eq!(resolve(ip("2001:db8::1"), &h, &trusted), ip("198.51.100.7"));
    }

    #[test]
    fn only_a_forwarding_peer_on_loopback_without_trusted_proxies_is_suspect() {
        let forwarded = headers(&["198.51.100.7"]);
        let suspect = |peer: &str, headers: &HeaderMap, trusted: &TrustedProxies| {
            forwarded_by_an_untrusted_local_proxy(ip(peer), headers, trusted)
        };
        assert!(suspect("127.0.0.1", &forwarded, &trusting(&[])));
        assert!(suspect("::ffff:127.0.0.1", &forwarded, &trusting(&[])));
        assert!(suspect("::1", &forwarded, &trusting(&[])));
        assert!(!suspect("127.0.0.1", &headers(&[]), &trusting(&[])));
        assert!(!suspect("203.0.113.9", &forwarded, &trusting(&[])));
        assert!(!suspect(
            "127.0.0.1",
            &forwarded,
            &trusting(&["10.0.0.0/8"])
        ));
    }

    #[test]
    fn ipv6_keyed_by_prefix() {
        assert_eq!(
            rate_limit_key(ip("2001:db8:1:2:3:4:5:6")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(rate_limit_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(rate_limit_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
