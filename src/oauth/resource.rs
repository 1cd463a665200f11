//! RFC 8707 resource indicators: the one canonical resource, and tolerant matching of what clients send.

use url::Url;

use super::{ErrorCode, OAuthError};

/// The protected resource: `{server_url}{resource_path}`.
#[derive(Clone, Debug)]
pub(crate) struct Resource {
    canonical: String,
    parsed: Url,
}

impl Resource {
    /// The resource for a validated server URL and path.
    pub(crate) fn new(server_url: &str, path: &str) -> Result<Self, url::ParseError> {
        let canonical = format!("{server_url}{path}");
        let parsed = Url::parse(&canonical)?;
        Ok(Self { canonical, parsed })
    }

    /// The canonical string, issued everywhere.
    pub(crate) fn as_str(&self) -> &str {
        &self.canonical
    }

    /// The resource a request names: its own if absent, `invalid_target` if foreign.
    ///
    /// Matching ignores what URL spelling cannot change (scheme and host case, a default port) and a
    /// trailing slash (Claude has sent one when the metadata had none); nothing else.
    pub(crate) fn check(&self, requested: Option<&str>) -> Result<(), OAuthError> {
        let Some(requested) = requested else {
            return Ok(());
        };
        if self.matches(requested) {
            Ok(())
        } else {
            Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!("this server only grants access to {}", self.canonical),
            ))
        }
    }

    fn matches(&self, requested: &str) -> bool {
        if requested == self.canonical {
            return true;
        }
        let Ok(url) = Url::parse(requested) else {
            return false;
        };
        url.fragment().is_none()
            && url.query().is_none()
            && url.username().is_empty()
            && url.password().is_none()
            && url.scheme() == self.parsed.scheme()
            && url.host() == self.parsed.host()
            && url.port_or_known_default() == self.parsed.port_or_known_default()
            && url.path().trim_end_matches('/') == self.parsed.path().trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerant_but_strict() {
        let r = Resource::new("https://mcp.example.com", "/mcp").unwrap();
        for ok in [
            None,
            Some("https://mcp.example.com/mcp"),
            Some("https://mcp.example.com/mcp/"),
            Some("HTTPS://MCP.example.com/mcp"),
            Some("https://mcp.example.com:443/mcp"),
        ] {
            assert!(r.check(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "https://mcp.example.com/",
            "https://mcp.example.com",
            "https://mcp.example.com/mcp2",
            "https://mcp.example.com/mcp/x",
            "https://evil.example.com/mcp",
            "http://mcp.example.com/mcp",
            "https://mcp.example.com:8443/mcp",
            "https://mcp.example.com/mcp?x=1",
            "https://mcp.example.com/mcp#f",
            "not a url",
        ] {
            let err = r.check(Some(bad)).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidTarget, "{bad}");
        }
    }
}
