//! Passkeys: the WebAuthn ceremonies (webauthn-rs) and the enrolment policy.
//!
//! The owner approves every client with a passkey. The first passkey is registered with the setup
//! token; later ones need an existing passkey's approval or a fresh configured setup token. Ceremony
//! state lives server-side in the [`TokenStore`], single use and short-lived, so a ceremony started
//! on one instance can finish on another that shares the store.

mod ceremony;
mod manage;
mod setup;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use url::Url;
use webauthn_rs::prelude::{
    CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Uuid, Webauthn, WebauthnBuilder,
};
use webauthn_rs_proto::ResidentKeyRequirement;

use crate::audit::{Audit, AuditEvent};
use crate::clock::Clock;
use crate::oauth::secret::Secret;
use crate::oauth::{ErrorCode, OAuthError};
use crate::store::{PasskeyChange, PasskeyRecord, PasskeyStore, StoreError, TokenHash, TokenStore};
use ceremony::Ceremony;
pub(crate) use ceremony::Purpose;
pub(crate) use setup::SetupToken;

/// How long a ceremony may take: webauthn-rs's default authenticator timeout.
const CEREMONY_LIFETIME_SECS: u64 = 300;

/// A started ceremony: the id to finish it with, and the options for `navigator.credentials`.
#[derive(Debug, Serialize)]
pub(crate) struct Challenge<T> {
    pub(crate) ceremony_id: String,
    pub(crate) options: T,
}

/// How a new passkey's registration is authorised.
#[derive(Debug)]
pub(crate) enum Enrolment {
    /// With the setup token.
    SetupToken(Secret),
    /// With an assertion by an existing passkey.
    Approval {
        ceremony_id: String,
        credential: Box<PublicKeyCredential>,
    },
    /// From the owner console, whose session a passkey assertion created.
    ConsoleSession,
}

/// The WebAuthn relying party and the owner's credentials.
pub(crate) struct Passkeys {
    webauthn: Webauthn,
    store: Arc<dyn PasskeyStore>,
    tokens: Arc<dyn TokenStore>,
    setup: SetupToken,
    app_name: String,
    audit: Audit,
    clock: Clock,
}

impl std::fmt::Debug for Passkeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passkeys").finish_non_exhaustive()
    }
}

impl Passkeys {
    /// The relying party for `server_url` (id = its host, origin = the URL).
    pub(crate) fn new(
        server_url: &Url,
        app_name: &str,
        store: Arc<dyn PasskeyStore>,
        tokens: Arc<dyn TokenStore>,
        setup: SetupToken,
        audit: Audit,
        clock: Clock,
    ) -> Result<Self, crate::Error> {
        let rp_id = server_url.host_str().unwrap_or_default();
        let webauthn = WebauthnBuilder::new(rp_id, server_url)
            .and_then(|builder| builder.rp_name(app_name).build())
            .map_err(|e| {
                crate::Error::invalid(
                    "server_url",
                    &format!("not usable as a passkey relying party: {e}"),
                )
            })?;
        Ok(Self {
            webauthn,
            store,
            tokens,
            setup,
            app_name: app_name.to_owned(),
            audit,
            clock,
        })
    }

    /// Whether any passkey is registered.
    pub(crate) async fn any_registered(&self) -> Result<bool, StoreError> {
        Ok(!self.store.list().await?.is_empty())
    }

    /// Whether the setup token was generated at start (rather than configured).
    pub(crate) fn setup_token_is_generated(&self) -> bool {
        self.setup.is_generated()
    }

    /// The setup token, when one is usable now and known to this process.
    pub(crate) async fn usable_setup_token(&self) -> Result<Option<String>, StoreError> {
        let token = self.setup.token();
        Ok(self
            .setup_token_usable(&TokenHash::of(token))
            .await?
            .then(|| token.to_owned()))
    }

    /// Start an assertion for `purpose` with a discoverable credential: the options name no
    /// credential (empty `allowCredentials`), so whoever asks learns neither the owner's credential
    /// ids nor how many there are (WebAuthn §14.6.3); the authenticator offers its own.
    pub(crate) async fn start_authentication(
        &self,
        purpose: Purpose,
    ) -> Result<Challenge<RequestChallengeResponse>, OAuthError> {
        let credentials: Vec<_> = self
            .store
            .list()
            .await?
            .into_iter()
            .map(|r| r.passkey)
            .collect();
        if credentials.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "no passkey is registered yet; register one first",
            ));
        }
        let (mut options, state) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(|e| server_error("start authentication", &e))?;
        // webauthn-rs asks for conditional (autofill) mediation; the pages ask on a button press.
        options.mediation = None;
        let ceremony = Ceremony::Authentication {
            state,
            credentials,
            purpose,
        };
        let ceremony_id = ceremony::save(&*self.tokens, self.clock.now(), &ceremony).await?;
        Ok(Challenge {
            ceremony_id,
            options,
        })
    }

    /// Verify an assertion for a ceremony started for `purpose`, and record the use. Returns the
    /// credential id of the passkey that signed.
    pub(crate) async fn finish_authentication(
        &self,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
        purpose: &Purpose,
    ) -> Result<String, OAuthError> {
        let Ceremony::Authentication {
            state,
            credentials,
            purpose: started_for,
        } = ceremony::take(&*self.tokens, ceremony_id).await?
        else {
            return Err(ceremony::mismatch());
        };
        if &started_for != purpose {
            return Err(ceremony::mismatch());
        }
        // The authenticator chose the credential: find it among the owner's.
        let (user_id, raw_id) = self
            .webauthn
            .identify_discoverable_authentication(credential)
            .map_err(|e| self.denied("passkey verification failed", &e))?;
        let passkey = credentials
            .iter()
            .find(|p| p.cred_id().as_slice() == raw_id)
            .ok_or_else(|| {
                self.denied(
                    "passkey verification failed",
                    &"not one of the owner's passkeys",
                )
            })?;
        let result = self
            .webauthn
            .finish_discoverable_authentication_v2(credential, state, passkey)
            .map_err(|e| self.denied("passkey verification failed", &e))?;
        let credential_id = URL_SAFE_NO_PAD.encode(result.cred_id());
        match self.store.get(&credential_id).await? {
            Some(record) if record.user_id == user_id => {}
            Some(_) => {
                return Err(self.denied(
                    "passkey verification failed",
                    &"the user handle is not the owner's",
                ));
            }
            None => return Err(no_longer_registered()),
        }
        // The store applies the use to the record as it is now: a counter recorded meanwhile by
        // another approval never goes back, a rename is kept, and nothing new writes nothing.
        let used = PasskeyChange::Used {
            result,
            at: self.clock.now(),
        };
        if self.store.modify(&credential_id, &used).await?.is_none() {
            return Err(no_longer_registered());
        }
        Ok(credential_id)
    }

    /// Start registering a passkey, authorised by `enrolment`.
    pub(crate) async fn start_registration(
        &self,
        enrolment: Enrolment,
        label: Option<&str>,
    ) -> Result<Challenge<CreationChallengeResponse>, OAuthError> {
        let setup_token_hash = match enrolment {
            Enrolment::SetupToken(token) => {
                let hash = TokenHash::of(token.expose());
                if !self.setup.matches(token.expose()) || !self.setup_token_usable(&hash).await? {
                    self.audit.emit(AuditEvent::SetupTokenRefused);
                    return Err(OAuthError::new(
                        ErrorCode::AccessDenied,
                        "the setup token is wrong or was already used",
                    ));
                }
                Some(hash)
            }
            Enrolment::Approval {
                ceremony_id,
                credential,
            } => {
                self.finish_authentication(&ceremony_id, &credential, &Purpose::Enrol)
                    .await?;
                None
            }
            Enrolment::ConsoleSession => None,
        };
        let existing = self.store.list().await?;
        let user_id = existing.first().map_or_else(Uuid::new_v4, |r| r.user_id);
        let exclude = existing
            .iter()
            .map(|r| r.passkey.cred_id().clone())
            .collect();
        let (mut options, state) = self
            .webauthn
            .start_passkey_registration(
                user_id,
                "owner",
                &format!("{} owner", self.app_name),
                Some(exclude),
            )
            .map_err(|e| server_error("start registration", &e))?;
        require_discoverable(&mut options);
        let label = clean_label(label, existing.len());
        let ceremony = Ceremony::Registration {
            state,
            user_id,
            label,
            setup_token_hash,
        };
        let ceremony_id = ceremony::save(&*self.tokens, self.clock.now(), &ceremony).await?;
        Ok(Challenge {
            ceremony_id,
            options,
        })
    }

    /// Finish a registration: verify the attestation, use up the setup token, store the passkey.
    /// Returns the passkey's label.
    pub(crate) async fn finish_registration(
        &self,
        ceremony_id: &str,
        credential: &RegisterPublicKeyCredential,
    ) -> Result<String, OAuthError> {
        let Ceremony::Registration {
            state,
            user_id,
            label,
            setup_token_hash,
        } = ceremony::take(&*self.tokens, ceremony_id).await?
        else {
            return Err(ceremony::mismatch());
        };
        let passkey = self
            .webauthn
            .finish_passkey_registration(credential, &state)
            .map_err(|e| self.denied("passkey registration failed", &e))?;
        if let Some(hash) = &setup_token_hash
            && !self.setup_token_usable(hash).await?
        {
            return Err(setup_token_used());
        }
        let credential_id = URL_SAFE_NO_PAD.encode(passkey.cred_id());
        let record = PasskeyRecord {
            credential_id: credential_id.clone(),
            user_id,
            passkey,
            label: label.clone(),
            created_at: self.clock.now(),
            last_used_at: None,
            setup_token_hash,
        };
        // The store uses the setup token up in the same atomic step as the insert: of two
        // registrations racing on one token exactly one gets here, and a failed insert (a full
        // disk, an outage) leaves the token usable, so the owner is not locked out.
        match self.store.insert(record).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(match &setup_token_hash {
                    Some(hash) if self.store.setup_token_used(hash).await? => setup_token_used(),
                    _ => OAuthError::invalid_request("this passkey is already registered"),
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.audit.emit(AuditEvent::PasskeyRegistered {
            credential_id,
            label: label.clone(),
        });
        Ok(label)
    }

    /// Refuse a ceremony that did not verify, and record it.
    fn denied(&self, what: &'static str, error: &dyn std::fmt::Display) -> OAuthError {
        tracing::debug!(target: "mcp_oauth::passkey", error = %error, "{what}");
        self.audit
            .emit(AuditEvent::PasskeyRejected { during: what });
        OAuthError::new(ErrorCode::AccessDenied, what)
    }

    /// A setup token can be used if it never registered a passkey, and a generated one only while
    /// no passkey exists (it exists to register the first).
    async fn setup_token_usable(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        if self.setup.is_generated() && self.any_registered().await? {
            return Ok(false);
        }
        if self.store.setup_token_used(hash).await? {
            return Ok(false);
        }
        Ok(!self
            .setup
            .has_legacy_use_marker(&*self.tokens, hash)
            .await?)
    }
}

/// Ask for a discoverable (resident) credential: assertions name no credential, so a passkey the
/// authenticator cannot find by itself could never sign. `required` rather than `preferred`: a
/// security key out of resident slots then fails at registration, in front of the owner, instead of
/// registering a passkey that can never approve. (webauthn-rs does not check it at the finish; it
/// only shapes the request.)
fn require_discoverable(options: &mut CreationChallengeResponse) {
    let selection = options
        .public_key
        .authenticator_selection
        .get_or_insert_with(Default::default);
    selection.resident_key = Some(ResidentKeyRequirement::Required);
    selection.require_resident_key = true;
}

fn no_longer_registered() -> OAuthError {
    OAuthError::new(
        ErrorCode::AccessDenied,
        "this passkey is no longer registered",
    )
}

fn setup_token_used() -> OAuthError {
    OAuthError::new(ErrorCode::AccessDenied, "the setup token was already used")
}

/// A readable label: control characters dropped, at most 64 characters, a default when empty.
pub(crate) fn clean_label(label: Option<&str>, existing: usize) -> String {
    let cleaned: String = label
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        format!("Passkey {}", existing + 1)
    } else {
        cleaned.to_owned()
    }
}

fn server_error(what: &'static str, error: &dyn std::fmt::Display) -> OAuthError {
    tracing::error!(target: "mcp_oauth::passkey", error = %error, "could not {what}");
    OAuthError::new(
        ErrorCode::ServerError,
        "the passkey ceremony could not be started",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_cleaned() {
        assert_eq!(clean_label(None, 0), "Passkey 1");
        assert_eq!(clean_label(Some("  \u{7}Laptop\n "), 2), "Laptop");
        assert_eq!(clean_label(Some(&"x".repeat(100)), 0).len(), 64);
    }
}
