//! Which metadata document URLs may be fetched, and which addresses may be connected to.
//!
//! A client id is chosen by whoever sends the authorization request, so fetching it must not become
//! a way to reach the server's own network (CIMD §"Server-Side Request Forgery"). The rules:
//!
//! - the URL is `https`, canonical, with a non-root path, no fragment, no user info, no `.`/`..`
//!   segments; its host is a public DNS name (with a dot, not `localhost`) or a public IP literal;
//! - its port is 443 unless the operator allowed others, so that the fetcher cannot be pointed at
//!   every service of a public host (a port scan with the server's address as the source);
//! - its host is not this server's own: a fetch of itself, or of what shares its name, on an
//!   attacker's behalf, from an address that may be trusted;
//! - every address the name resolves to must be public (if any one is not, none is used), and the
//!   connection goes to those vetted addresses only, so a second resolution cannot swap them
//!   (DNS rebinding).
//!
//! "Public" excludes loopback, private, link-local (the cloud metadata address 169.254.169.254
//! included), unique-local, unspecified, multicast, broadcast, documentation, benchmarking,
//! carrier-grade NAT (100.64.0.0/10), reserved and IETF-special ranges, and the IPv4-mapped and
//! NAT64 forms of each. IP addresses are parsed by the URL parser and the standard library only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use url::{Host, Url};

use crate::rules::limits::MAX_URI_BYTES;

/// IPv4 ranges that are not public beyond what `Ipv4Addr`'s stable methods cover.
const NON_PUBLIC_V4: [Ipv4Net; 7] = [
    // "This network" (RFC 791); `is_unspecified` covers only 0.0.0.0.
    Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8),
    // Carrier-grade NAT shared space (RFC 6598).
    Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 10),
    // Link-local, home of the cloud metadata service 169.254.169.254 (also `is_link_local`).
    Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16),
    // IETF protocol assignments (RFC 6890), e.g. DS-Lite and NAT64 discovery.
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 0, 0), 24),
    // Deprecated 6to4 relay anycast (RFC 7526).
    Ipv4Net::new_assert(Ipv4Addr::new(192, 88, 99, 0), 24),
    // Benchmarking (RFC 2544).
    Ipv4Net::new_assert(Ipv4Addr::new(198, 18, 0, 0), 15),
    // Reserved (RFC 1112), broadcast included.
    Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// The IPv6 global unicast space; everything outside it (IPv4-compatible, discard-only,
/// site-local, NAT64 local-use, ...) is refused, except the two embeddings handled first.
const GLOBAL_UNICAST_V6: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// Inside the global unicast space, ranges that are not public.
const NON_PUBLIC_V6: [Ipv6Net; 4] = [
    // IETF protocol assignments: Teredo (which hides an IPv4 address), benchmarking, ORCHID.
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
    // Documentation (RFC 3849, RFC 9637).
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 0), 32),
    Ipv6Net::new_assert(Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),
    // 6to4 (RFC 3056, deprecated): the embedded IPv4 address could be anything.
    Ipv6Net::new_assert(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),
];

/// NAT64 well-known prefix (RFC 6052): the last 32 bits are an IPv4 address, judged as such.
const NAT64_V6: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);

/// A metadata document URL that passed the URL rules.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) url: Url,
    pub(crate) host: TargetHost,
    pub(crate) port: u16,
    /// The testing switch let this `http` loopback URL through: only loopback addresses may be
    /// connected to (and nothing else).
    pub(crate) loopback_only: bool,
}

/// The host to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TargetHost {
    /// A DNS name, resolved once by the fetcher.
    Name(String),
    /// An IP literal, already vetted.
    Ip(IpAddr),
}

impl Target {
    /// The host as the fetch slots count it: its name (or address), whatever the port, so that
    /// more ports on one host do not buy more slots.
    pub(crate) fn host_key(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// `host[:port]` as the consent page shows it: the port only when it is not the default.
    pub(crate) fn display_host(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
}

/// What the operator decided about metadata document URLs.
#[derive(Clone, Debug)]
pub(crate) struct UrlRules {
    /// The ports a URL may name ([`OAuthConfig::cimd_allowed_ports`](crate::OAuthConfig)).
    pub(crate) allowed_ports: Vec<u16>,
    /// This server's own host (the issuer's), never fetched.
    pub(crate) own_host: String,
    /// The testing switch: it also admits `http://127.0.0.1:PORT/…`, `http://[::1]:PORT/…` and
    /// `http://localhost:PORT/…`. It opens the loopback interface, the server's own machine, so
    /// such a URL is exempt from the own-host rule; it is still held to the port rule.
    pub(crate) allow_loopback_http: bool,
}

impl UrlRules {
    /// Whether a URL may name `port`, and if not, why, in words that only repeat the rule (the
    /// URL is the client's own input).
    fn check_port(&self, port: u16) -> Result<(), String> {
        if self.allowed_ports.contains(&port) {
            return Ok(());
        }
        let allowed: Vec<String> = self.allowed_ports.iter().map(u16::to_string).collect();
        Err(match allowed.as_slice() {
            [one] => format!("it names port {port}, and only port {one} is allowed"),
            _ => format!(
                "it names port {port}, and only ports {} are allowed",
                allowed.join(", ")
            ),
        })
    }
}

/// Check a client id against the URL rules.
///
/// # Errors
///
/// A plain-words reason, for "the client_id … is not an acceptable … URL: {reason}". It is about
/// the client id's text alone, never about the network, so it may be shown to anyone.
pub(crate) fn check_url(client_id: &str, rules: &UrlRules) -> Result<Target, String> {
    let allow_loopback_http = rules.allow_loopback_http;
    if client_id.len() > MAX_URI_BYTES {
        return Err(format!("it is longer than {MAX_URI_BYTES} bytes"));
    }
    if client_id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("it contains whitespace or control characters".into());
    }
    let url = Url::parse(client_id).map_err(|e| format!("it is not a valid URL ({e})"))?;
    let loopback_http = allow_loopback_http
        && url.scheme() == "http"
        && crate::rules::redirect_uri::is_loopback_host(&url);
    if url.scheme() != "https" && !loopback_http {
        return Err("it must use https".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it must not contain a user name or password".into());
    }
    if url.fragment().is_some() || client_id.contains('#') {
        return Err("it must not contain a fragment".into());
    }
    if has_dot_segment(client_id) {
        return Err("its path must not contain \".\" or \"..\" segments".into());
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err("it must have a path: the site root is not a client metadata document".into());
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| "it has no port".to_owned())?;
    let host = match url.host() {
        Some(Host::Domain(name)) => {
            let local = name == "localhost" || name.ends_with(".localhost");
            if local && !loopback_http {
                return Err("it points at this machine (localhost)".into());
            }
            if !local && !name.contains('.') {
                return Err("its host is not a public domain name".into());
            }
            TargetHost::Name(name.to_owned())
        }
        Some(Host::Ipv4(ip)) => TargetHost::Ip(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => TargetHost::Ip(IpAddr::V6(ip)),
        None => return Err("it has no host".into()),
    };
    if let TargetHost::Ip(ip) = host
        && !address_allowed(ip, loopback_http)
    {
        return Err("it points at a private, loopback or otherwise non-public address".into());
    }
    // `mcp.example.com.` is the same host as `mcp.example.com`.
    let same_host = |host: &str| host.trim_end_matches('.') == rules.own_host.trim_end_matches('.');
    if !loopback_http && url.host_str().is_some_and(same_host) {
        return Err("it names this server's own host".into());
    }
    rules.check_port(port)?;
    // Last, so that the reasons above win: the parser would also "canonicalise" an obfuscated
    // address such as `https://2130706433/`.
    if url.as_str() != client_id {
        return Err(format!(
            "it is not written in canonical form (that would be {})",
            url.as_str()
        ));
    }
    Ok(Target {
        url,
        host,
        port,
        loopback_only: loopback_http,
    })
}

/// Whether the fetcher may connect to `ip`: a public address, or (testing switch, `http` loopback
/// URL) a loopback one and nothing else.
pub(crate) fn address_allowed(ip: IpAddr, loopback_only: bool) -> bool {
    if loopback_only {
        return ip.to_canonical().is_loopback();
    }
    is_public(ip)
}

/// Whether an address is publicly routable (see the module documentation for what is not).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            if NAT64_V6.contains(&v6) {
                let [.., a, b, c, d] = v6.octets();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            is_public_v6(v6)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || NON_PUBLIC_V4.iter().any(|net| net.contains(&ip)))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local())
        && GLOBAL_UNICAST_V6.contains(&ip)
        && !NON_PUBLIC_V6.iter().any(|net| net.contains(&ip))
}

/// Whether the raw path has a `.` or `..` segment, literally or percent-encoded. Checked on the
/// string as sent: the URL parser would silently resolve them.
fn has_dot_segment(client_id: &str) -> bool {
    let Some((_, after_scheme)) = client_id.split_once("://") else {
        return false;
    };
    let Some(path_start) = after_scheme.find('/') else {
        return false;
    };
    let path = &after_scheme[path_start..];
    let path = path.split(['?', '#']).next().unwrap_or_default();
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default rules, as configured for `https://mcp.example.com`.
    fn rules(allow_loopback_http: bool) -> UrlRules {
        UrlRules {
            allowed_ports: vec![443],
            own_host: "mcp.example.com".into(),
            allow_loopback_http,
        }
    }

    fn refused(id: &str) -> String {
        match check_url(id, &rules(false)) {
            Ok(target) => panic!("{id} was accepted: {target:?}"),
            Err(reason) => reason,
        }
    }

    #[test]
    fn real_client_ids_are_accepted() {
        for id in [
            "https://claude.ai/oauth/claude-code-client-metadata",
            "https://claude.ai/oauth/mcp-oauth-client-metadata",
            "https://chatgpt.com/oauth/codex/client.json",
            "https://vscode.dev/oauth/client-metadata.json",
            "https://client.example.com/meta?v=1",
            "https://93.184.215.14/client.json",
            "https://mcp.example.com.evil.example/meta",
        ] {
            let target = check_url(id, &rules(false)).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert!(!target.loopback_only);
            assert_eq!(target.url.as_str(), id);
        }
        let target = check_url("https://claude.ai/oauth/x", &rules(false)).unwrap();
        assert_eq!(target.host, TargetHost::Name("claude.ai".into()));
        assert_eq!(target.port, 443);
        assert_eq!(target.display_host(), "claude.ai");
    }

    #[test]
    fn only_port_443_unless_the_operator_allows_others() {
        for id in [
            "https://client.example.com:8443/m",
            "https://client.example.com:22/m",
            "https://client.example.com:80/m",
            "https://93.184.215.14:8080/m",
            "https://[2606:4700:4700::1111]:25/m",
        ] {
            let reason = refused(id);
            assert!(
                reason.contains("only port 443 is allowed"),
                "{id}: {reason}"
            );
        }
        let mut opted_in = rules(false);
        opted_in.allowed_ports = vec![443, 8443];
        let target = check_url("https://client.example.com:8443/m", &opted_in).unwrap();
        assert_eq!(target.port, 8443);
        assert_eq!(target.display_host(), "client.example.com:8443");
        assert!(check_url("https://client.example.com/m", &opted_in).is_ok());
        let reason = check_url("https://client.example.com:22/m", &opted_in).unwrap_err();
        assert!(
            reason.contains("only ports 443, 8443 are allowed"),
            "{reason}"
        );
    }

    #[test]
    fn this_servers_own_host_is_refused_on_any_port() {
        let mut opted_in = rules(false);
        opted_in.allowed_ports = vec![443, 8443];
        for id in [
            "https://mcp.example.com/.well-known/oauth-authorization-server",
            "https://mcp.example.com/oauth/client.json",
            "https://mcp.example.com:8443/oauth/client.json",
            "https://mcp.example.com./oauth/client.json",
            "https://MCP.example.com/oauth/client.json",
        ] {
            let reason = check_url(id, &opted_in).unwrap_err();
            assert!(reason.contains("own host"), "{id}: {reason}");
        }
        // Another name on the same domain is another host.
        assert!(check_url("https://api.mcp.example.com/client.json", &opted_in).is_ok());
    }

    #[test]
    fn url_shape_rules() {
        for (id, expected) in [
            ("http://example.com/x", "https"),
            ("ftp://example.com/x", "https"),
            ("https://example.com", "path"),
            ("https://example.com/", "path"),
            ("https://example.com/x#frag", "fragment"),
            ("https://example.com/x#", "fragment"),
            ("https://user@example.com/x", "user name"),
            ("https://user:pw@example.com/x", "user name"),
            ("https://example.com/a/../x", "segments"),
            ("https://example.com/a/./x", "segments"),
            ("https://example.com/a/%2e%2E/x", "segments"),
            ("https://example.com/a/%2e/x", "segments"),
            ("https://EXAMPLE.com/x", "canonical"),
            ("https://example.com:443/x", "canonical"),
            ("https://example.com/ x", "whitespace"),
            ("https://intranet/x", "public domain"),
            ("not a url", "whitespace"),
            ("https://", "valid URL"),
        ] {
            let reason = refused(id);
            assert!(reason.contains(expected), "{id}: {reason}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URI_BYTES));
        assert!(refused(&long).contains("longer"));
    }

    #[test]
    fn non_public_hosts_are_refused_before_any_connection() {
        for id in [
            "https://127.0.0.1/x",
            "https://localhost/x",
            "https://api.localhost/x",
            "https://10.0.0.1/x",
            "https://172.16.5.4/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[::ffff:169.254.169.254]/x",
            "https://[fd00::1]/x",
            "https://[fe80::1]/x",
            "https://[64:ff9b::a00:1]/x",
            "https://2130706433/x",
            "https://0x7f.1/x",
        ] {
            let reason = refused(id);
            assert!(
                reason.contains("non-public") || reason.contains("localhost"),
                "{id}: {reason}"
            );
        }
    }

    #[test]
    fn the_testing_switch_admits_http_loopback_only() {
        let mut switched = rules(true);
        switched.allowed_ports = vec![443, 8123];
        // The test server is `http://localhost:PORT`: the switch opens loopback, its own host too.
        switched.own_host = "localhost".into();
        for id in [
            "http://127.0.0.1:8123/doc",
            "http://localhost:8123/doc",
            "http://[::1]:8123/doc",
        ] {
            assert!(
                check_url(id, &rules(false)).is_err(),
                "{id} without the switch"
            );
            let target = check_url(id, &switched).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert!(target.loopback_only);
        }
        // It opens no port: only those allowed.
        let reason = check_url("http://127.0.0.1:8124/doc", &switched).unwrap_err();
        assert!(reason.contains("port 8124"), "{reason}");
        for id in [
            "https://127.0.0.1/x",
            "https://localhost/x",
            "http://example.com/x",
            "http://10.0.0.1:8080/x",
            "https://10.0.0.1/x",
        ] {
            assert!(check_url(id, &switched).is_err(), "{id} with the switch");
        }
        // A public https URL under the switch is still held to the public-address rule.
        let target = check_url("https://claude.ai/x", &switched).unwrap();
        assert!(!target.loopback_only);
        assert!(!address_allowed("10.0.0.1".parse().unwrap(), false));
        assert!(address_allowed("127.0.0.1".parse().unwrap(), true));
        assert!(address_allowed("::ffff:127.0.0.1".parse().unwrap(), true));
        assert!(!address_allowed("10.0.0.1".parse().unwrap(), true));
        assert!(!address_allowed("93.184.215.14".parse().unwrap(), true));
    }

    #[test]
    fn address_filter() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "192.88.99.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "100::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001::1",
            "2001:2::1",
            "2001:db8::1",
            "3fff::1",
            "2002:7f00:1::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_public(ip), "{ip} counted as public");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "169.253.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_public(ip), "{ip} counted as non-public");
        }
    }
}
