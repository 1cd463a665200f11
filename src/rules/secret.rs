//! Random secrets and their comparison.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::store::TokenHash;

/// Prefixes make leaked secrets recognisable to secret scanners and to people.
pub(crate) mod prefix {
    pub(crate) const ACCESS_TOKEN: &str = "mcp_at_";
    pub(crate) const REFRESH_TOKEN: &str = "mcp_rt_";
    pub(crate) const CODE: &str = "mcp_ac_";
    pub(crate) const REQUEST: &str = "mcp_rq_";
    pub(crate) const CEREMONY: &str = "mcp_pc_";
    pub(crate) const CLIENT_SECRET: &str = "mcp_cs_";
    pub(crate) const CLIENT_ID: &str = "mcp_client_";
    pub(crate) const SETUP_TOKEN: &str = "mcp_setup_";
    pub(crate) const CONSOLE_SESSION: &str = "mcp_os_";
}

/// A new secret: the prefix and 256 random bits, base64url.
pub(crate) fn generate(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    let mut out = String::with_capacity(prefix.len() + 43);
    out.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut out);
    out
}

/// A new identifier (not a secret): the prefix and 128 random bits.
pub(crate) fn identifier(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A secret string held in memory: a token, a client secret, a setup token. Its `Debug` prints
/// `[redacted]`, so no `{:?}` of a struct holding one (a panic, a `tracing` field, an error
/// report) can leak it; the value is reached only through [`expose`](Self::expose). It serialises
/// and deserialises as the plain string, for the responses and requests that carry it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    /// The secret itself, for sending it or comparing it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// What `Debug` prints in place of a secret.
pub(crate) const REDACTED: &str = "[redacted]";

/// Whether a presented secret hashes to `expected`, in constant time.
pub(crate) fn hash_matches(presented: &str, expected: &TokenHash) -> bool {
    TokenHash::of(presented).0.ct_eq(&expected.0).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_and_distinct() {
        let a = generate(prefix::ACCESS_TOKEN);
        let b = generate(prefix::ACCESS_TOKEN);
        assert!(a.starts_with("mcp_at_"));
        assert_eq!(a.len(), 7 + 43);
        assert_ne!(a, b);
    }

    #[test]
    fn a_secret_is_redacted_in_debug_but_not_in_json() {
        let secret = Secret::from("mcp_at_value");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:#?}", Some(&secret)), "Some(\n    [redacted],\n)");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"mcp_at_value\"");
        assert_eq!(secret.expose(), "mcp_at_value");
    }

    #[test]
    fn comparison() {
        let hash = TokenHash::of("s3cret");
        assert!(hash_matches("s3cret", &hash));
        assert!(!hash_matches("s3cret ", &hash));
    }
}
