//! Passkeys: the WebAuthn ceremonies (webauthn-rs) and the enrolment policy.
//!
//! The owner approves every client with a passkey. The first passkey is registered with the setup
//! token; later ones need an existing passkey's approval or a fresh configured setup token. Ceremony
//! state lives server-side in the [`TokenStore`], single use and short-lived, so a ceremony started
//! on one instance can finish on another that shares the store. The check of an assertion, and
//! the proofs of the owner's presence it returns, live in [`presence`](crate::presence).

#[cfg(test)]
#[cfg(feature = "memory")]
mod lifetime_tests;
mod manage;
mod setup;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use url::Url;
use webauthn_rs::prelude::{
    CreationChallengeResponse, RegisterPublicKeyCredential, RequestChallengeResponse, Uuid,
    WebauthnBuilder,
};
use webauthn_rs_proto::ResidentKeyRequirement;

use crate::audit::{Audit, AuditEvent};
use crate::clock::Clock;
use crate::presence::session::LiveSession;
use crate::presence::{self, Ceremony, Verifier};
pub(crate) use crate::presence::{Enrol, PasskeyError, Purpose};
use crate::rules::secret::{self, Secret};
use crate::store::{PasskeyRecord, PasskeyStore, StoreError, TokenHash, TokenStore};
pub(crate) use manage::ChangeRefused;
pub(crate) use setup::SetupToken;

/// A started ceremony: the id to finish it with, and the options for `navigator.credentials`.
#[derive(Debug, Serialize)]
pub(crate) struct Challenge<T> {
    pub(crate) ceremony_id: String,
    pub(crate) options: T,
}

/// How a new passkey's registration is authorised. Every variant holds a value only its check
/// makes: the setup token (compared here), an existing passkey's approval (made by the assertion
/// check), or a live console session (made by the session lookup).
#[derive(Debug)]
pub(crate) enum Enrolment {
    /// With the setup token.
    SetupToken(Secret),
    /// With an assertion by an existing passkey.
    Approved(Enrol),
    /// From the owner console, signed in with a passkey that is still registered.
    ConsoleSession(LiveSession),
}

/// The WebAuthn relying party and the owner's credentials.
pub(crate) struct Passkeys {
    presence: Verifier,
    setup: SetupToken,
    app_name: String,
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
            presence: Verifier::new(webauthn, store, tokens, audit, clock),
            setup,
            app_name: app_name.to_owned(),
        })
    }

    /// The check of assertions, which returns the proofs of the owner's presence.
    pub(crate) fn presence(&self) -> &Verifier {
        &self.presence
    }

    fn store(&self) -> &dyn PasskeyStore {
        self.presence.store()
    }

    fn tokens(&self) -> &dyn TokenStore {
        self.presence.tokens()
    }

    /// Whether any passkey is registered.
    pub(crate) async fn any_registered(&self) -> Result<bool, StoreError> {
        Ok(!self.store().list().await?.is_empty())
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
    ) -> Result<Challenge<RequestChallengeResponse>, PasskeyError> {
        let credentials: Vec<_> = self
            .store()
            .list()
            .await?
            .into_iter()
            .map(|r| r.passkey)
            .collect();
        if credentials.is_empty() {
            return Err(PasskeyError::Denied(
                "no passkey is registered yet; register one first",
            ));
        }
        let (mut options, state) = self
            .presence
            .webauthn()
            .start_discoverable_authentication()
            .map_err(|e| server_error("start authentication", &e))?;
        // webauthn-rs asks for conditional (autofill) mediation; the pages ask on a button press.
        options.mediation = None;
        let ceremony = Ceremony::Authentication {
            state,
            credentials,
            purpose,
        };
        let ceremony_id = self.save(&ceremony).await?;
        Ok(Challenge {
            ceremony_id,
            options,
        })
    }

    /// Start registering a passkey, authorised by `enrolment` (spent here).
    pub(crate) async fn start_registration(
        &self,
        enrolment: Enrolment,
        label: Option<&str>,
    ) -> Result<Challenge<CreationChallengeResponse>, PasskeyError> {
        let (setup_token_hash, approved_by) = match enrolment {
            Enrolment::SetupToken(token) => {
                let hash = TokenHash::of(token.expose());
                if !self.setup.matches(token.expose()) || !self.setup_token_usable(&hash).await? {
                    self.presence.audit().emit(AuditEvent::SetupTokenRefused);
                    return Err(PasskeyError::Denied(
                        "the setup token is wrong or was already used",
                    ));
                }
                (Some(hash), None)
            }
            Enrolment::Approved(enrol) => (None, Some(enrol.credential_id().to_owned())),
            Enrolment::ConsoleSession(session) => (None, Some(session.credential_id().to_owned())),
        };
        let existing = self.store().list().await?;
        let user_id = existing.first().map_or_else(Uuid::new_v4, |r| r.user_id);
        let exclude = existing
            .iter()
            .map(|r| r.passkey.cred_id().clone())
            .collect();
        let (mut options, state) = self
            .presence
            .webauthn()
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
            approved_by,
        };
        let ceremony_id = self.save(&ceremony).await?;
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
    ) -> Result<String, PasskeyError> {
        let Ceremony::Registration {
            state,
            user_id,
            label,
            setup_token_hash,
            approved_by,
        } = presence::take(self.tokens(), ceremony_id, self.presence.now()).await?
        else {
            return Err(presence::mismatch());
        };
        let passkey = self
            .presence
            .webauthn()
            .finish_passkey_registration(credential, &state)
            .map_err(|e| self.presence.denied("passkey registration failed", &e))?;
        // What authorised the registration still holds now: the setup token is unused, or the
        // passkey that approved it (by assertion or through its console session) is still the
        // owner's. Removing a stolen passkey thus also stops the enrolments it started.
        match (&setup_token_hash, &approved_by) {
            (Some(hash), _) if !self.setup_token_usable(hash).await? => {
                return Err(setup_token_used());
            }
            (Some(_), _) => {}
            (None, Some(approver)) if !self.presence.still_registered(approver).await? => {
                return Err(PasskeyError::Denied(
                    "the passkey that approved this registration is no longer registered",
                ));
            }
            (None, Some(_)) => {}
            // A ceremony saved before registrations recorded their approver: start again.
            (None, None) => return Err(presence::mismatch()),
        }
        let credential_id = URL_SAFE_NO_PAD.encode(passkey.cred_id());
        let record = PasskeyRecord {
            credential_id: credential_id.clone(),
            user_id,
            passkey,
            label: label.clone(),
            created_at: self.presence.now(),
            last_used_at: None,
            setup_token_hash,
        };
        // The store uses the setup token up in the same atomic step as the insert: of two
        // registrations racing on one token exactly one gets here, and a failed insert (a full
        // disk, an outage) leaves the token usable, so the owner is not locked out.
        match self.store().insert(record).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(match &setup_token_hash {
                    Some(hash) if self.store().setup_token_used(hash).await? => setup_token_used(),
                    _ => PasskeyError::Unusable("this passkey is already registered"),
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.presence.audit().emit(AuditEvent::PasskeyRegistered {
            credential_id,
            label: label.clone(),
        });
        Ok(label)
    }

    /// Keep a ceremony under a fresh id, and return the id.
    async fn save(&self, ceremony: &Ceremony) -> Result<String, PasskeyError> {
        let id = secret::generate(secret::prefix::CEREMONY);
        presence::save(self.tokens(), &id, self.presence.now(), ceremony).await?;
        Ok(id)
    }

    /// A setup token can be used if it never registered a passkey, and a generated one only while
    /// no passkey exists (it exists to register the first).
    async fn setup_token_usable(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        if self.setup.is_generated() && self.any_registered().await? {
            return Ok(false);
        }
        if self.store().setup_token_used(hash).await? {
            return Ok(false);
        }
        Ok(!self
            .setup
            .has_legacy_use_marker(self.tokens(), hash)
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

fn setup_token_used() -> PasskeyError {
    PasskeyError::Denied("the setup token was already used")
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

fn server_error(what: &'static str, error: &dyn std::fmt::Display) -> PasskeyError {
    tracing::error!(target: "mcp_oauth::passkey", error = %error, "could not {what}");
    PasskeyError::Internal("the passkey ceremony could not be started")
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
