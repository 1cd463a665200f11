//! Redirect URI rules: what may be registered, and when a requested URI matches a registered one.

use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use super::limits::{MAX_URI_BYTES, check_bytes};

/// Whether the URL's host is a loopback interface: `localhost`, `127.0.0.1` or `[::1]`.
pub(crate) fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
        None => false,
    }
}

/// Check a redirect URI a client wants to register: `https`, or `http` on a loopback host, or one of
/// the allowed private-use URIs exactly; never a fragment or credentials.
///
/// # Errors
///
/// A sentence saying what is wrong.
pub(crate) fn validate_registrable(uri: &str, native_allowlist: &[String]) -> Result<(), String> {
    check_bytes("redirect URI", uri, MAX_URI_BYTES)?;
    // The URL parser silently strips whitespace and control characters; a URI that needs that is
    // not the URI the client will use, so refuse it rather than register something else.
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("redirect URI contains whitespace or control characters".into());
    }
    if native_allowlist.iter().any(|allowed| allowed == uri) {
        return Ok(());
    }
    let url = Url::parse(uri).map_err(|_| "redirect URI is not an absolute URI".to_owned())?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err("redirect URI must not contain a fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("redirect URI must not contain credentials".into());
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        "http" => Err(
            "http redirect URIs are allowed only on loopback (127.0.0.1, [::1], localhost)".into(),
        ),
        _ => Err("redirect URI must use https, or http on a loopback host".into()),
    }
}

/// Whether a requested redirect URI matches a registered one: exactly, character for character;
/// or, for an `http` loopback registration, with any port (RFC 8252 §7.3) and everything else exact.
pub(crate) fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(registered_url), Ok(requested_url)) = (Url::parse(registered), Url::parse(requested))
    else {
        return false;
    };
    if registered_url.scheme() != "http" || !is_loopback_host(&registered_url) {
        return false;
    }
    // Only canonical spellings qualify, so no parser normalisation can make two different strings
    // meet; then the two must differ in the port alone.
    if requested_url.as_str() != requested || requested_url.fragment().is_some() {
        return false;
    }
    without_port(registered_url) == without_port(requested_url)
}

fn without_port(mut url: Url) -> String {
    let _ = url.set_port(None);
    url.into()
}

/// `scheme://host[:port]` of a redirect URI, for showing on the consent page.
pub(crate) fn origin_of(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url.origin().ascii_serialization(),
        // Private-use schemes have opaque origins; show what identifies the application.
        Ok(url) => match url.host_str() {
            Some(host) => format!("{}://{host}", url.scheme()),
            None => format!("{}:", url.scheme()),
        },
        Err(_) => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native() -> Vec<String> {
        vec!["cursor://anysphere.cursor-mcp/oauth/callback".to_owned()]
    }

    #[test]
    fn registrable_uris() {
        for ok in [
            "https://claude.ai/api/mcp/auth_callback",
            "http://127.0.0.1/callback",
            "http://localhost:33418/",
            "http://[::1]:9000/cb",
            "cursor://anysphere.cursor-mcp/oauth/callback",
        ] {
            assert_eq!(validate_registrable(ok, &native()), Ok(()), "{ok}");
        }
        for bad in [
            "http://example.com/cb",
            "https://example.com/cb#frag",
            "https://user:pw@example.com/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "cursor://anysphere.cursor-mcp/other",
            "/relative",
            "https://example.com/ cb",
            " https://example.com/cb",
            "http://127.0.0.2.evil.com/cb",
        ] {
            assert!(validate_registrable(bad, &native()).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_match_only_for_non_loopback() {
        let reg = "https://claude.ai/api/mcp/auth_callback";
        assert!(matches(reg, reg));
        for other in [
            "https://claude.ai/api/mcp/auth_callback/",
            "https://CLAUDE.ai/api/mcp/auth_callback",
            "https://claude.ai:443/api/mcp/auth_callback",
            "https://claude.ai/api/mcp/auth_callback?x=1",
            "https://claude.ai./api/mcp/auth_callback",
            "https://claude.ai:8443/api/mcp/auth_callback",
        ] {
            assert!(!matches(reg, other), "{other}");
        }
    }

    #[test]
    fn loopback_any_port() {
        assert!(matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:51234/callback"
        ));
        assert!(matches(
            "http://localhost/callback",
            "http://localhost:3000/callback"
        ));
        assert!(matches("http://[::1]:80/cb", "http://[::1]:8080/cb"));
        assert!(matches(
            "http://localhost:1000/cb?a=1",
            "http://localhost:2000/cb?a=1"
        ));
    }

    #[test]
    fn loopback_hosts_do_not_stand_in_for_each_other() {
        assert!(!matches(
            "http://localhost/callback",
            "http://127.0.0.1:3000/callback"
        ));
        assert!(!matches(
            "http://127.0.0.1/callback",
            "http://[::1]:3000/callback"
        ));
        assert!(!matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:3000/other"
        ));
        assert!(!matches(
            "http://127.0.0.1/callback",
            "https://127.0.0.1:3000/callback"
        ));
        assert!(!matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:3000/cb?x=1"
        ));
        assert!(!matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:3000/cb#f"
        ));
        assert!(!matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:3000/a/../cb"
        ));
        assert!(!matches(
            "http://127.0.0.1/cb",
            "http://user@127.0.0.1:3000/cb"
        ));
    }

    #[test]
    fn origins() {
        assert_eq!(origin_of("https://claude.ai/api/x?y"), "https://claude.ai");
        assert_eq!(
            origin_of("http://localhost:33418/"),
            "http://localhost:33418"
        );
        assert_eq!(
            origin_of("cursor://anysphere.cursor-mcp/oauth/callback"),
            "cursor://anysphere.cursor-mcp"
        );
    }
}
