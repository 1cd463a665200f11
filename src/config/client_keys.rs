//! How a configured client (the pre-registered one, a machine) gives the public keys it signs
//! client assertions with: inline (`jwks`) or at a URL (`jwks_uri`), never both; and when the
//! pre-registered client may go without a secret.

use super::OAuthConfig;
use crate::Error;

/// The shortest secret of the pre-registered client.
const MIN_SECRET_CHARS: usize = 16;

/// Check the pre-registered client's credentials. An empty `client_secret` says "no secret": it
/// is allowed only beside keys, so that the client cannot end up with no way to authenticate, nor
/// with a secret anyone could send; with keys and no secret, the client must sign.
pub(super) fn validate_pre_registered(config: &OAuthConfig) -> Result<(), Error> {
    let jwks = config.client_jwks.as_deref();
    let jwks_uri = config.client_jwks_uri.as_deref();
    key_fields(("client_jwks", jwks), ("client_jwks_uri", jwks_uri))
        .map_err(|reason| Error::invalid("client_jwks_uri", &reason))?;
    let has_keys = jwks.is_some() || jwks_uri.is_some();
    if config.client_secret.is_empty() && has_keys {
        return Ok(());
    }
    if config.client_secret.chars().count() < MIN_SECRET_CHARS {
        return Err(Error::invalid(
            "client_secret",
            &format!(
                "must be at least {MIN_SECRET_CHARS} characters (or empty, when client_jwks or client_jwks_uri is set, for a client that only signs)"
            ),
        ));
    }
    Ok(())
}

/// One client's keys, `jwks` and `jwks_uri` as the configuration names them: at most one of
/// them (RFC 7591 §2), and a URL only where this build can fetch it.
///
/// # Errors
///
/// The rule broken, naming the fields.
pub(super) fn key_fields(
    (jwks_name, jwks): (&str, Option<&str>),
    (uri_name, jwks_uri): (&str, Option<&str>),
) -> Result<(), String> {
    if jwks.is_some() && jwks_uri.is_some() {
        return Err(format!(
            "{jwks_name} and {uri_name} are both set: give the keys inline or at a URL, not both (RFC 7591 §2)"
        ));
    }
    if jwks_uri.is_some() && !cfg!(feature = "cimd") {
        return Err(format!(
            "{uri_name} needs the `cimd` cargo feature, whose fetcher brings key sets"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MachineClient;

    fn config() -> OAuthConfig {
        OAuthConfig::with_defaults(
            "https://mcp.example.com",
            "claude",
            "a-long-enough-secret",
            "App",
            "p.json",
        )
    }

    fn refused(config: &OAuthConfig) -> (&'static str, String) {
        match config.validate() {
            Err(Error::InvalidConfig { field, reason }) => (field, reason),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn no_secret_is_allowed_only_beside_keys() {
        let mut keyless = config();
        keyless.client_secret = String::new();
        assert_eq!(refused(&keyless).0, "client_secret");
        // Blank is not empty: a secret of spaces is a short secret.
        let mut blank = config();
        blank.client_secret = " ".repeat(4);
        blank.client_jwks = Some("{}".into());
        assert_eq!(refused(&blank).0, "client_secret");

        let mut signing = config();
        signing.client_secret = String::new();
        signing.client_jwks = Some("{}".into());
        signing.validate().unwrap();
    }

    #[test]
    fn keys_inline_and_at_a_url_at_once_are_refused() {
        let mut both = config();
        both.client_jwks = Some("{}".into());
        both.client_jwks_uri = Some("https://keys.example.com/jwks.json".into());
        let (field, reason) = refused(&both);
        assert_eq!(field, "client_jwks_uri");
        assert!(reason.contains("RFC 7591"), "{reason}");

        let mut machine = MachineClient::with_jwks("ci", "{}", ["mcp"]);
        machine.jwks_uri = Some("https://keys.example.com/jwks.json".into());
        let mut both = config();
        both.machine_clients = vec![machine];
        let (field, reason) = refused(&both);
        assert_eq!(field, "machine_clients");
        assert!(reason.contains("\"ci\": jwks and jwks_uri"), "{reason}");
    }

    /// Without the fetcher, a key URL is a configuration error naming the feature, never a
    /// client that cannot authenticate.
    #[cfg(not(feature = "cimd"))]
    #[test]
    fn a_jwks_uri_without_the_cimd_feature_names_the_feature() {
        let uri = "https://keys.example.com/jwks.json";
        let mut pre = config();
        pre.client_jwks_uri = Some(uri.into());
        let (field, reason) = refused(&pre);
        assert_eq!(field, "client_jwks_uri");
        assert!(reason.contains("`cimd` cargo feature"), "{reason}");

        let mut machine = config();
        machine.machine_clients = vec![MachineClient::with_jwks_uri("ci", uri, ["mcp"])];
        let (field, reason) = refused(&machine);
        assert_eq!(field, "machine_clients");
        assert!(reason.contains("`cimd` cargo feature"), "{reason}");
    }
}
