//! The `client_credentials` grant (RFC 6749 §4.4) for machine clients: programs the owner named in
//! the configuration, each with the scopes it may have, that get access tokens for themselves.
//! No refresh token (§4.4.3): a machine authenticates again instead. Each token is a grant of its
//! own, marked in its id, so that the bearer guard can tell a machine's token from one the owner
//! approved, and the owner can revoke it alone.
//!
//! A machine's token stands only as long as the configuration it was minted under: it carries a
//! fingerprint of the machine's credentials (client id, secret, keys) and the number of the place
//! it holds, and the guard and introspection refuse it once the machine is gone, its credentials
//! changed (a rotated secret, another key set) or its cap fell to or below that place, and give it
//! only the scopes still in the machine's list. No record of the
//! configuration is kept anywhere else, so instances sharing a store each judge by their own.

use super::assertion::keys::AssertionRules;
use super::bearer::TokenSubject;
use super::clients::Client;
use super::params::{self, Params};
use super::payload::{self, MachineTokenView, TokenGrant};
use super::token::{Minting, TokenResponse};
use super::{AuthServer, ErrorCode, OAuthError};
use crate::audit::AuditEvent;
use crate::store::{GrantId, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What starts the id of every grant a machine's token lives in. Grants the owner approves have
/// base64url ids, which never hold a `.`.
const MACHINE_GRANT_PREFIX: &str = "machine.";

/// A machine client from the configuration, as the protocol rules see it.
#[derive(Clone, Debug)]
pub(crate) struct MachineClient {
    pub(crate) client_id: String,
    /// The scopes it may have.
    pub(crate) scopes: Vec<String>,
    pub(crate) secret_hash: Option<TokenHash>,
    /// Its public keys: it may sign assertions. Required when it has no secret.
    pub(crate) assertion: Option<AssertionRules>,
    /// How many live tokens it may hold at once: its places ([`TokenKind::MachineSlot`]).
    pub(crate) max_live_tokens: u32,
    /// The fingerprint of its credentials ([`credentials_fingerprint`]), written into each of
    /// its tokens.
    pub(crate) credentials: [u8; 32],
}

/// What binds a machine's token to the credentials it was minted under: SHA-256 over its client
/// id, its secret, its key set as configured and the URL of its keys, each length-prefixed so no
/// two configurations share a fingerprint. Any change to the secret, the key set text or the key
/// URL ends the tokens minted before; a rotation of the keys published at that URL does not (the
/// URL still says whose keys they are). A machine without a key URL hashes as before key URLs
/// existed, so its tokens outlive the upgrade. Stored in the token store as a secret's hash is,
/// never shown or logged.
pub(crate) fn credentials_fingerprint(
    client_id: &str,
    secret: Option<&str>,
    jwks: Option<&str>,
    jwks_uri: Option<&str>,
) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"mcp-oauth machine credentials v1");
    for part in [Some(client_id), secret, jwks] {
        hash_part(&mut hash, part);
    }
    // Appended only when set: every part is self-delimiting, so this cannot collide.
    if jwks_uri.is_some() {
        hash_part(&mut hash, jwks_uri);
    }
    hash.finalize().into()
}

/// One part of the fingerprint: `0` for none, else `1`, its length and its bytes.
fn hash_part(hash: &mut Sha256, part: Option<&str>) {
    match part {
        None => hash.update([0]),
        Some(text) => {
            hash.update([1]);
            hash.update((text.len() as u64).to_be_bytes());
            hash.update(text.as_bytes());
        }
    }
}

impl MachineClient {
    pub(super) fn client(&self) -> Client {
        Client {
            client_id: self.client_id.clone(),
            secret_hash: self.secret_hash,
            redirect_uris: Vec::new(),
            name: None,
            pre_registered: false,
            may_refresh: false,
            may_use_code: false,
            metadata_host: None,
            assertion: self.assertion.clone(),
            machine_scopes: Some(self.scopes.clone()),
        }
    }
}

/// A fresh id for the grant of one machine token.
fn machine_grant_id() -> GrantId {
    GrantId(format!("{MACHINE_GRANT_PREFIX}{}", GrantId::generate().0))
}

/// Whether a grant holds a machine's token (got with `client_credentials`), not one the owner
/// approved.
pub(crate) fn is_machine_grant(grant_id: &GrantId) -> bool {
    grant_id.0.starts_with(MACHINE_GRANT_PREFIX)
}

impl AuthServer {
    /// The machine client configured as `client_id`, if any.
    pub(crate) fn machine_client(&self, client_id: &str) -> Option<&MachineClient> {
        self.settings
            .machine_clients
            .iter()
            .find(|machine| machine.client_id == client_id)
    }

    /// On whose authority the access token `record`, issued to `client_id` with `scopes`, acts,
    /// and the scopes it carries now. `None`: a machine's token the configuration no longer
    /// stands behind (the machine is gone, its credentials changed, or none of the token's scopes
    /// is still in its list). The one check the bearer guard and introspection share, so that a
    /// resource server asking either gets the same answer.
    pub(crate) fn standing(
        &self,
        record: &TokenRecord,
        client_id: &str,
        scopes: Vec<String>,
    ) -> Option<(TokenSubject, Vec<String>)> {
        if !is_machine_grant(&record.grant_id) {
            return Some((TokenSubject::Owner, scopes));
        }
        let machine = self.machine_client(client_id)?;
        // A payload without a fingerprint is no token of this machine's configuration either.
        let minted: MachineTokenView<'_> = payload::decode(record).ok()?;
        if minted.credentials != machine.credentials || minted.place >= machine.max_live_tokens {
            return None;
        }
        let scopes: Vec<String> = minted
            .grant
            .scopes
            .into_iter()
            .filter(|scope| machine.scopes.contains(scope))
            .collect();
        (!scopes.is_empty()).then_some((TokenSubject::Machine, scopes))
    }

    /// The machine clients the configuration names.
    pub(crate) fn machine_clients(&self) -> &[MachineClient] {
        &self.settings.machine_clients
    }

    /// The `client_credentials` grant for an authenticated `client`.
    ///
    /// # Errors
    ///
    /// `unauthorized_client` for a client that is no machine client; `invalid_scope` for a
    /// scope beyond its list; `invalid_target` for another resource.
    pub(super) async fn client_credentials(
        &self,
        client: &Client,
        params: &Params<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let (Some(allowed), Some(machine)) = (
            &client.machine_scopes,
            self.machine_client(&client.client_id),
        ) else {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "only the machine clients the server's configuration names may use client_credentials",
            ));
        };
        self.settings.resource.check(params.get("resource"))?;
        let scopes = requested_scopes(params.get("scope"), allowed)?;
        let grant_id = machine_grant_id();
        let grant = TokenGrant {
            client_id: client.client_id.clone(),
            scopes,
            resource: self.settings.resource.as_str().to_owned(),
        };
        // Armed before the place is written: a request dropped while the write is answered
        // leaves the place to this guard.
        let held = PlaceHeld {
            tokens: Arc::clone(&self.tokens),
            grant_id: Some(grant_id.clone()),
        };
        let place = match self.take_place(machine, &grant_id).await {
            Ok(place) => place,
            Err(error) => {
                // No place was written (all taken, or the write failed).
                held.keep();
                return Err(error);
            }
        };
        let tokens = match self
            .issue(
                &grant_id,
                &grant,
                &grant.scopes,
                Minting::Machine {
                    credentials: &machine.credentials,
                    place,
                },
            )
            .await
        {
            Ok(tokens) => {
                held.keep();
                tokens
            }
            Err(error) => {
                // No token came of it: give the place back (the grant's records are its only).
                // The guard stays armed until that is done, in case the request is dropped here.
                self.end_machine_grant(&grant_id).await?;
                held.keep();
                return Err(error);
            }
        };
        self.audit.emit(AuditEvent::MachineTokenIssued {
            client_id: client.client_id.clone(),
            grant_id,
            scopes: grant.scopes,
        });
        Ok(tokens)
    }
}

impl AuthServer {
    /// End a machine's grant at its own request (`/revoke`): its one token, the place it held
    /// and its row in the owner's console go. Without the revocation marker other grants get: a
    /// marker catches a token minted while the revocation runs, and a machine's grant mints its
    /// one token before the machine can hold it to revoke it; and a marker, kept as long as the
    /// longest token could live, is a record per revocation that no cap counts, with which a
    /// machine taking and revoking tokens in a loop could fill a store.
    pub(super) async fn end_machine_grant(&self, grant_id: &GrantId) -> Result<u64, StoreError> {
        self.tokens.revoke_grant(grant_id).await
    }

    /// Take one of `machine`'s places for the token about to be minted in `grant_id`, until that
    /// token expires; revoking the grant gives it back. Each place is a record inserted only if
    /// absent, so instances sharing the store never hand out one place twice. Places are tried
    /// from a random one on, so a machine below its cap usually takes the first it tries.
    ///
    /// The places belong to the machine's credentials as configured: tokens a rotation (or a
    /// removal) ended keep theirs until they expire, but those are another set's, so the machine
    /// with its new credentials has all of its own. Returns the number of the place taken.
    ///
    /// # Errors
    ///
    /// `invalid_request` when every place is taken.
    async fn take_place(
        &self,
        machine: &MachineClient,
        grant_id: &GrantId,
    ) -> Result<u32, OAuthError> {
        let places = machine.max_live_tokens;
        let credentials: String = machine
            .credentials
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let expires_at = self.now().plus(self.settings.token_lifetime_secs);
        let first = rand::random::<u32>() % places;
        for step in 0..places {
            let place = (first + step) % places;
            let record = TokenRecord {
                kind: TokenKind::MachineSlot,
                hash: TokenHash::of(&format!("{}\n{credentials}\n{place}", machine.client_id)),
                grant_id: grant_id.clone(),
                expires_at,
                payload: Vec::new(),
            };
            match self.tokens.insert(record).await {
                Ok(()) => return Ok(place),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            format!(
                "this machine client holds {places} live tokens, the most it may: use one until it expires, or have the owner revoke one"
            ),
        ))
    }
}

/// A place taken for a token not yet answered. Dropped unanswered (the client hung up, a timeout
/// layer gave up while the store was slow), it gives the place back and removes whatever of the
/// grant was written, in a task of its own: nobody holds that token, and nothing else would free
/// the place before the token's lifetime ends.
struct PlaceHeld {
    tokens: Arc<dyn TokenStore>,
    grant_id: Option<GrantId>,
}

impl PlaceHeld {
    /// The request reached its answer: the place is the token's now.
    fn keep(mut self) {
        self.grant_id = None;
    }
}

impl Drop for PlaceHeld {
    fn drop(&mut self) {
        let Some(grant_id) = self.grant_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let tokens = Arc::clone(&self.tokens);
        runtime.spawn(async move {
            if let Err(error) = tokens.revoke_grant(&grant_id).await {
                tracing::warn!(target: "mcp_oauth::store", %error, "a dropped client_credentials request could not give its place back; it frees when the place expires");
            }
        });
    }
}

/// The scopes asked for, every one of them in `allowed`; none asked for: all of `allowed`.
fn requested_scopes(
    requested: Option<&str>,
    allowed: &[String],
) -> Result<Vec<String>, OAuthError> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in requested.unwrap_or_default().split_whitespace() {
        if !allowed.iter().any(|a| a == scope) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!(
                    "scope {} is not one this machine client may have",
                    params::printable(scope)
                ),
            ));
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    if scopes.is_empty() {
        return Ok(allowed.to_vec());
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_narrow_within_the_list_and_nothing_beyond() {
        let allowed = vec!["mcp".to_owned(), "reports:read".to_owned()];
        assert_eq!(requested_scopes(None, &allowed).unwrap(), allowed);
        assert_eq!(requested_scopes(Some(" "), &allowed).unwrap(), allowed);
        assert_eq!(
            requested_scopes(Some("reports:read reports:read"), &allowed).unwrap(),
            vec!["reports:read".to_owned()]
        );
        for beyond in ["admin", "mcp admin", "MCP"] {
            let error = requested_scopes(Some(beyond), &allowed).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidScope, "{beyond}");
        }
    }

    /// A machine without a key URL keeps the fingerprint it had before key URLs existed (so an
    /// upgrade ends none of its tokens); a URL, or another URL, is another fingerprint.
    #[test]
    fn the_key_url_is_part_of_the_fingerprint_only_when_set() {
        let secret = Some("machine-secret-0123456789");
        let hex = |bytes: [u8; 32]| bytes.map(|b| format!("{b:02x}")).concat();
        assert_eq!(
            hex(credentials_fingerprint("ci", secret, None, None)),
            "481cf87ad731fad050f100b6eb2f6753eea0c7ecdafa8b536203725a9561cf8b",
            "the fingerprint of a machine without a key URL changed"
        );
        let a = credentials_fingerprint("ci", None, None, Some("https://keys.example.com/a"));
        let b = credentials_fingerprint("ci", None, None, Some("https://keys.example.com/b"));
        assert_ne!(a, b);
        assert_ne!(a, credentials_fingerprint("ci", None, None, None));
        // The same text as a key set, or as a key URL, is another configuration.
        let as_set = credentials_fingerprint("ci", None, Some("https://keys.example.com/a"), None);
        assert_ne!(a, as_set);
    }

    #[test]
    fn only_machine_grant_ids_are_marked() {
        assert!(is_machine_grant(&machine_grant_id()));
        for _ in 0..100 {
            assert!(!is_machine_grant(&GrantId::generate()));
        }
    }
}
