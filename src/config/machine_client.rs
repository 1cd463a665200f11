//! [`MachineClient`]: a program the owner lets get tokens for itself (`client_credentials`), and
//! the rules its configuration must meet.

use super::OAuthConfig;
use crate::Error;

/// The shortest machine client secret, as for the pre-registered client's.
const MIN_SECRET_CHARS: usize = 16;
/// The most live tokens [`MachineClient::max_live_tokens`] may allow. (A store that evicts when
/// full bounds the machines' caps together more tightly: see the field.)
const MAX_LIVE_TOKENS: u32 = 10_000;

/// A machine client: a program (a CI job, a nightly report) that gets access tokens for itself
/// with `grant_type=client_credentials`, authenticated by a signed client assertion
/// (`private_key_jwt`, recommended) or its secret. No person approves its tokens: the owner
/// approved it once, by naming it here with the scopes it may have, and MCP handlers see its
/// tokens as a machine's ([`TokenSubject::Machine`](crate::TokenSubject::Machine)).
///
/// Its `Debug` output never shows the secret.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MachineClient {
    /// Its client id: not the pre-registered client's, nor another machine's.
    pub client_id: String,
    /// The scopes it may have, each one of [`OAuthConfig::scopes`]; a request without `scope`
    /// gets them all.
    pub scopes: Vec<String>,
    /// Its secret (`client_secret_basic` or `client_secret_post`), at least 16 characters.
    /// `None`: it must sign.
    pub secret: Option<String>,
    /// Its public keys, a JWK set as JSON text, as in [`OAuthConfig::client_jwks`]: with them it
    /// signs client assertions (`private_key_jwt`). Public keys only. `None`: its secret only, or
    /// its keys at [`jwks_uri`](Self::jwks_uri).
    pub jwks: Option<String>,
    /// Where it publishes its public keys, instead of [`jwks`](Self::jwks) (not both: RFC 7591
    /// §2), under the rules of [`OAuthConfig::client_jwks_uri`]: fetched and cached, one refetch a
    /// minute for a key the cached set lacks (a rotation at the URL keeps its tokens; another URL
    /// ends them), 503 while the set cannot be fetched. Needs the `cimd` cargo feature.
    pub jwks_uri: Option<String>,
    /// How many live tokens it may hold at once (1 to 10,000): beyond them `client_credentials`
    /// is refused until one expires or is revoked, so a machine (or a thief of its credentials)
    /// cannot fill the token store. Each live token keeps three records in the store; on a store
    /// that evicts when full (the [`MemoryStore`](crate::MemoryStore)), the machines' caps
    /// together may take at most a quarter of its room
    /// ([`TokenStore::eviction_capacity`](crate::store::TokenStore::eviction_capacity)), or the
    /// layer does not build: 8,333 tokens in all with the default store. Default
    /// [`MachineClient::DEFAULT_MAX_LIVE_TOKENS`].
    pub max_live_tokens: u32,
}

impl MachineClient {
    /// The default [`max_live_tokens`](Self::max_live_tokens): a token a job for every 15
    /// minutes of the default one-day token lifetime.
    pub const DEFAULT_MAX_LIVE_TOKENS: u32 = 100;

    /// A machine client that authenticates with a secret.
    pub fn with_secret(
        client_id: impl Into<String>,
        secret: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            secret: Some(secret.into()),
            jwks: None,
            jwks_uri: None,
            max_live_tokens: Self::DEFAULT_MAX_LIVE_TOKENS,
        }
    }

    /// A machine client that signs client assertions with the keys of `jwks` (a JWK set as JSON
    /// text), and has no secret.
    pub fn with_jwks(
        client_id: impl Into<String>,
        jwks: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            secret: None,
            jwks: Some(jwks.into()),
            jwks_uri: None,
            max_live_tokens: Self::DEFAULT_MAX_LIVE_TOKENS,
        }
    }

    /// A machine client that signs client assertions with the keys published at `jwks_uri`, and
    /// has no secret.
    pub fn with_jwks_uri(
        client_id: impl Into<String>,
        jwks_uri: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            secret: None,
            jwks: None,
            jwks_uri: Some(jwks_uri.into()),
            max_live_tokens: Self::DEFAULT_MAX_LIVE_TOKENS,
        }
    }
}

impl std::fmt::Debug for MachineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            client_id,
            scopes,
            secret,
            jwks,
            jwks_uri,
            max_live_tokens,
        } = self;
        f.debug_struct("MachineClient")
            .field("client_id", client_id)
            .field("scopes", scopes)
            .field("secret", &secret.as_ref().map(|_| super::Redacted))
            .field("jwks", jwks)
            .field("jwks_uri", jwks_uri)
            .field("max_live_tokens", max_live_tokens)
            .finish()
    }
}

/// Check [`OAuthConfig::machine_clients`]. Whether `jwks` holds usable public keys, and whether
/// `jwks_uri` meets the fetcher's URL rules, is checked when the layer is built, where keys are
/// read.
pub(super) fn validate(config: &OAuthConfig) -> Result<(), Error> {
    let bad = |id: &str, reason: &str| {
        Err(Error::invalid(
            "machine_clients",
            &format!("{id:?}: {reason}"),
        ))
    };
    for (i, machine) in config.machine_clients.iter().enumerate() {
        let id = machine.client_id.as_str();
        if id.trim().is_empty() || id.chars().any(|c| c.is_control() || c == ' ') {
            return bad(
                id,
                "is not a client id (empty, or with spaces or control characters)",
            );
        }
        if id == config.client_id {
            return bad(id, "is the pre-registered client's id (client_id)");
        }
        if config.machine_clients[..i]
            .iter()
            .any(|m| m.client_id == id)
        {
            return bad(id, "is named twice");
        }
        if machine.scopes.is_empty() {
            return bad(id, "must be allowed at least one scope");
        }
        if let Some(scope) = machine.scopes.iter().find(|s| !config.scopes.contains(s)) {
            return bad(id, &format!("scope {scope:?} is not in scopes"));
        }
        if !(1..=MAX_LIVE_TOKENS).contains(&machine.max_live_tokens) {
            return bad(
                id,
                &format!("max_live_tokens must be from 1 to {MAX_LIVE_TOKENS}"),
            );
        }
        super::client_keys::key_fields(
            ("jwks", machine.jwks.as_deref()),
            ("jwks_uri", machine.jwks_uri.as_deref()),
        )
        .or_else(|reason| bad(id, &reason))?;
        let has_keys = machine.jwks.is_some() || machine.jwks_uri.is_some();
        match (&machine.secret, has_keys) {
            (None, false) => {
                return bad(
                    id,
                    "needs a secret or keys (jwks or jwks_uri) to authenticate with",
                );
            }
            (Some(secret), _) if secret.chars().count() < MIN_SECRET_CHARS => {
                return bad(
                    id,
                    &format!("its secret must be at least {MIN_SECRET_CHARS} characters"),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(machine: MachineClient) -> OAuthConfig {
        let mut config = OAuthConfig::with_defaults(
            "https://mcp.example.com",
            "claude",
            "a-long-enough-secret",
            "App",
            "p.json",
        );
        config.machine_clients = vec![machine];
        config
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let machine = MachineClient::with_secret("ci", "machine-secret-0123456789", ["mcp"]);
        let output = format!("{:?}", config_with(machine.clone()));
        assert!(!output.contains("machine-secret"), "{output}");
        assert!(output.contains("\"ci\""), "{output}");
        assert!(!format!("{machine:?}").contains("machine-secret"));
    }

    #[test]
    fn bad_machine_clients_are_refused_naming_the_field() {
        let secret = "machine-secret-0123456789";
        for (machine, needle) in [
            (
                MachineClient::with_secret("", secret, ["mcp"]),
                "not a client id",
            ),
            (
                MachineClient::with_secret("a b", secret, ["mcp"]),
                "not a client id",
            ),
            (
                MachineClient::with_secret("claude", secret, ["mcp"]),
                "pre-registered",
            ),
            (
                MachineClient::with_secret("ci", secret, Vec::<String>::new()),
                "at least one scope",
            ),
            (
                MachineClient::with_secret("ci", secret, ["admin"]),
                "not in scopes",
            ),
            (
                MachineClient::with_secret("ci", "short", ["mcp"]),
                "at least 16",
            ),
            (
                MachineClient {
                    secret: None,
                    ..MachineClient::with_secret("ci", secret, ["mcp"])
                },
                "a secret or keys",
            ),
            (
                MachineClient {
                    max_live_tokens: 0,
                    ..MachineClient::with_secret("ci", secret, ["mcp"])
                },
                "max_live_tokens",
            ),
            (
                MachineClient {
                    max_live_tokens: MAX_LIVE_TOKENS + 1,
                    ..MachineClient::with_secret("ci", secret, ["mcp"])
                },
                "max_live_tokens",
            ),
        ] {
            let error = config_with(machine).validate().unwrap_err();
            let Error::InvalidConfig { field, reason } = error else {
                panic!("{error:?}");
            };
            assert_eq!(field, "machine_clients");
            assert!(reason.contains(needle), "{reason}");
        }
        let mut twice = config_with(MachineClient::with_secret("ci", secret, ["mcp"]));
        twice.machine_clients.push(twice.machine_clients[0].clone());
        assert!(matches!(
            twice.validate(),
            Err(Error::InvalidConfig {
                field: "machine_clients",
                ..
            })
        ));
        assert!(
            config_with(MachineClient::with_jwks("ci", "{}", ["mcp"]))
                .validate()
                .is_ok()
        );
    }
}
