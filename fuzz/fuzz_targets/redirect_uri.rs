//! Redirect URI rules: what a client may register, and which requested URI matches a registered
//! one. The property that matters: no accepted pair sends the browser anywhere but where the
//! client registered (RFC 9700 §4.1, exact matching; RFC 8252 §7.3, any port on loopback).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcp_oauth::fuzzing::{redirect_matches, redirect_validate_registrable};
use url::Url;

const NATIVE: &str = "cursor://anysphere.cursor-mcp/oauth/callback";

#[derive(Arbitrary, Debug)]
enum Scheme {
    Http,
    Https,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Host {
    Localhost,
    LocalhostUpper,
    Ipv4Loopback,
    Ipv6Loopback,
    Example,
    Other(String),
}

/// A URI built from parts near the edges of the rules, or any string at all.
#[derive(Arbitrary, Debug)]
enum Uri {
    Raw(String),
    Native,
    Built {
        scheme: Scheme,
        userinfo: Option<String>,
        host: Host,
        port: Option<u16>,
        path: String,
        query: Option<String>,
        fragment: Option<String>,
    },
}

impl Uri {
    fn render(&self) -> String {
        match self {
            Uri::Raw(raw) => raw.clone(),
            Uri::Native => NATIVE.to_owned(),
            Uri::Built {
                scheme,
                userinfo,
                host,
                port,
                path,
                query,
                fragment,
            } => {
                let mut uri = match scheme {
                    Scheme::Http => "http".to_owned(),
                    Scheme::Https => "https".to_owned(),
                    Scheme::Other(other) => other.clone(),
                };
                uri.push_str("://");
                if let Some(userinfo) = userinfo {
                    uri.push_str(userinfo);
                    uri.push('@');
                }
                uri.push_str(match host {
                    Host::Localhost => "localhost",
                    Host::LocalhostUpper => "LocalHost",
                    Host::Ipv4Loopback => "127.0.0.1",
                    Host::Ipv6Loopback => "[::1]",
                    Host::Example => "client.example.com",
                    Host::Other(other) => other,
                });
                if let Some(port) = port {
                    uri.push_str(&format!(":{port}"));
                }
                if !path.starts_with('/') {
                    uri.push('/');
                }
                uri.push_str(path);
                for (mark, part) in [('?', query), ('#', fragment)] {
                    if let Some(part) = part {
                        uri.push(mark);
                        uri.push_str(part);
                    }
                }
                uri
            }
        }
    }
}

fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

/// RFC 9700 §2.1 / RFC 8252 §7.3 as DESIGN states them, written apart from the implementation.
fn registrable(uri: &str) -> bool {
    if uri == NATIVE {
        return true;
    }
    if uri.len() > 2000
        || uri.chars().any(|c| c.is_whitespace() || c.is_control())
        || uri.contains('#')
    {
        return false;
    }
    let Ok(url) = Url::parse(uri) else {
        return false;
    };
    let credentials = !url.username().is_empty() || url.password().is_some();
    !credentials
        && (url.scheme() == "https" && url.host().is_some()
            || url.scheme() == "http" && is_loopback(&url))
}

fuzz_target!(|pair: (Uri, Uri, u16)| {
    let (registered, requested, port) = pair;
    let (registered, requested) = (registered.render(), requested.render());
    let allowlist = [NATIVE.to_owned()];

    let accepted = redirect_validate_registrable(&registered, &allowlist).is_ok();
    assert_eq!(accepted, registrable(&registered), "{registered:?}");

    if redirect_matches(&registered, &requested) && registered != requested {
        // Only a loopback http registration stretches, and only over the port.
        let reg = Url::parse(&registered).expect("a stretched registration parses");
        let req = Url::parse(&requested).expect("a stretched request parses");
        assert_eq!(req.as_str(), requested, "only canonical spellings stretch");
        assert!(
            reg.scheme() == "http" && is_loopback(&reg),
            "{registered:?}"
        );
        assert_eq!(req.scheme(), reg.scheme());
        assert_eq!(req.host(), reg.host(), "{registered:?} vs {requested:?}");
        assert_eq!(
            (req.username(), req.password()),
            (reg.username(), reg.password())
        );
        assert_eq!(
            (req.path(), req.query(), req.fragment()),
            (reg.path(), reg.query(), None)
        );
    }

    // And it does stretch: a registered loopback URI matches itself on any port.
    if let Ok(mut url) = Url::parse(&registered)
        && accepted
        && url.scheme() == "http"
        && is_loopback(&url)
        && url.fragment().is_none()
        && url.set_port(Some(port)).is_ok()
    {
        assert!(
            redirect_matches(&registered, url.as_str()),
            "{registered:?} on port {port}"
        );
    }
});
