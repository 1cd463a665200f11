//! The configured clients as the protocol rules see them: the pre-registered client and the
//! machine clients, read and checked when the layer is built. Keys come inline (`jwks`, read
//! now) or at a URL (`jwks_uri`, held now to the URL rules the fetcher applies to every key set).

use std::sync::Arc;

use crate::Error;
use crate::config::OAuthConfig;
use crate::oauth::assertion::keys::{AssertionRules, KeySource, public_key_set};
use crate::oauth::assertion::public_keys::PublicKeys;
use crate::oauth::clients::PreRegistered;
use crate::oauth::machine::{MachineClient as MachineRules, credentials_fingerprint};
use crate::store::TokenHash;

/// The pre-registered client, with its keys read. An empty `client_secret` (which `validate`
/// allows only beside keys) is no secret: the client must sign.
pub(super) fn pre_registered(
    config: &OAuthConfig,
    server_url: &url::Url,
) -> Result<PreRegistered, Error> {
    let secret_hash =
        (!config.client_secret.is_empty()).then(|| TokenHash::of(&config.client_secret));
    let keys = configured_keys(
        config,
        server_url,
        config.client_jwks.as_deref(),
        config.client_jwks_uri.as_deref(),
    )
    .map_err(|(field, reason)| Error::invalid(field.pre_registered(), &reason))?;
    Ok(PreRegistered {
        client_id: config.client_id.clone(),
        redirect_uris: config.client_redirect_uris.clone(),
        name: config.client_name.clone(),
        // Its secret keeps working beside its keys; without a secret, it must sign.
        assertion: keys.map(|keys| AssertionRules {
            keys,
            algorithm: None,
            required: secret_hash.is_none(),
        }),
        secret_hash,
    })
}

/// The records one live machine token keeps in the token store: its place, the token, and the
/// grant that is its row in the owner's console.
const RECORDS_PER_MACHINE_TOKEN: u64 = 3;

/// Refuse machine clients whose caps together could fill more than a quarter of a store that
/// evicts live records when full (`capacity`, from
/// [`TokenStore::eviction_capacity`](crate::store::TokenStore::eviction_capacity)): at their caps
/// they would push the owner's tokens out. The rest is the owner's, and room for the store's
/// shards to fill unevenly.
pub(super) fn check_machine_room(config: &OAuthConfig, capacity: Option<u64>) -> Result<(), Error> {
    let Some(capacity) = capacity else {
        return Ok(());
    };
    let tokens: u64 = config
        .machine_clients
        .iter()
        .map(|machine| u64::from(machine.max_live_tokens))
        .sum();
    let records = tokens * RECORDS_PER_MACHINE_TOKEN;
    if records > capacity / 4 {
        return Err(Error::invalid(
            "machine_clients",
            &format!(
                "their max_live_tokens add up to {tokens} live tokens ({records} records in the token store), more than a quarter of the {capacity} the store holds before it evicts: lower max_live_tokens or give the store more room"
            ),
        ));
    }
    Ok(())
}

/// The machine clients, with their keys read: one without a secret must sign.
pub(super) fn machine_clients(
    config: &OAuthConfig,
    server_url: &url::Url,
) -> Result<Vec<MachineRules>, Error> {
    config
        .machine_clients
        .iter()
        .map(|machine| {
            let keys = configured_keys(
                config,
                server_url,
                machine.jwks.as_deref(),
                machine.jwks_uri.as_deref(),
            )
            .map_err(|(field, reason)| {
                Error::invalid(
                    "machine_clients",
                    &format!("{:?}: {} {reason}", machine.client_id, field.machine()),
                )
            })?;
            Ok(MachineRules {
                client_id: machine.client_id.clone(),
                scopes: machine.scopes.clone(),
                secret_hash: machine.secret.as_deref().map(TokenHash::of),
                assertion: keys.map(|keys| AssertionRules {
                    keys,
                    algorithm: None,
                    required: machine.secret.is_none(),
                }),
                max_live_tokens: machine.max_live_tokens,
                credentials: credentials_fingerprint(
                    &machine.client_id,
                    machine.secret.as_deref(),
                    machine.jwks.as_deref(),
                    machine.jwks_uri.as_deref(),
                ),
            })
        })
        .collect()
}

/// Which of a configured client's key fields is bad.
#[derive(Clone, Copy)]
enum KeyField {
    Jwks,
    JwksUri,
}

impl KeyField {
    fn pre_registered(self) -> &'static str {
        match self {
            Self::Jwks => "client_jwks",
            Self::JwksUri => "client_jwks_uri",
        }
    }

    fn machine(self) -> &'static str {
        match self {
            Self::Jwks => "jwks",
            Self::JwksUri => "jwks_uri",
        }
    }
}

/// A configured client's keys: the set given inline, read now, or the URL of its set, held to
/// the URL rules of metadata documents (`validate` already refused both at once, and a URL
/// without the `cimd` feature).
fn configured_keys(
    config: &OAuthConfig,
    server_url: &url::Url,
    jwks: Option<&str>,
    jwks_uri: Option<&str>,
) -> Result<Option<KeySource>, (KeyField, String)> {
    if let Some(text) = jwks {
        let set = inline_keys(text).map_err(|reason| (KeyField::Jwks, reason))?;
        return Ok(Some(KeySource::Inline(Arc::new(set))));
    }
    let Some(uri) = jwks_uri else {
        return Ok(None);
    };
    check_key_uri(config, server_url, uri).map_err(|reason| {
        (
            KeyField::JwksUri,
            format!("is not an acceptable key set URL: {reason}"),
        )
    })?;
    Ok(Some(KeySource::Uri(uri.to_owned())))
}

/// A configured `jwks_uri` meets the URL rules that the fetcher applies to every key set.
#[cfg(feature = "cimd")]
fn check_key_uri(config: &OAuthConfig, server_url: &url::Url, uri: &str) -> Result<(), String> {
    crate::cimd::check_url(uri, &super::url_rules(config, server_url)).map(drop)
}

/// Without the `cimd` feature there is no fetcher (`validate` says so first).
#[cfg(not(feature = "cimd"))]
fn check_key_uri(_: &OAuthConfig, _: &url::Url, _: &str) -> Result<(), String> {
    Err("a jwks_uri needs the `cimd` cargo feature".to_owned())
}

/// Whether a configured client publishes its keys at a URL: the key fetcher is then needed even
/// with metadata documents off.
#[cfg(feature = "cimd")]
pub(super) fn has_key_uri(config: &OAuthConfig) -> bool {
    config.client_jwks_uri.is_some() || config.machine_clients.iter().any(|m| m.jwks_uri.is_some())
}

/// A JWK set configured inline, as JSON text: public signing keys only, at least one usable.
fn inline_keys(text: &str) -> Result<PublicKeys, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("is not valid JSON ({e})"))?;
    let set = public_key_set(&value)?;
    if set.is_empty() {
        return Err("holds no usable public signing key (RSA, EC P-256 or Ed25519)".to_owned());
    }
    Ok(set)
}
