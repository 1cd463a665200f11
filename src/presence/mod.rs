//! The owner's presence, proven: the check of a passkey assertion, and the values it returns.
//!
//! An operation that needs the owner there (approving a client, signing in to the console,
//! enrolling another passkey) takes one of the proofs below by value. Their fields are private and
//! they have no constructor, no `Clone`, no `Default` and no `Deserialize`: the only way to hold
//! one is [`Verifier`]'s check of an assertion made for that very purpose, and spending it uses it
//! up. This module sits below `oauth` (it depends on the stores and the audit log only), so the
//! authorization server can name the approval it requires without depending on the passkey
//! ceremonies above it.

mod ceremony;
mod error;
pub(crate) mod session;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use webauthn_rs::prelude::{PublicKeyCredential, Webauthn};

use crate::audit::{Audit, AuditEvent};
use crate::clock::Clock;
use crate::store::{PasskeyChange, PasskeyStore, StoreError, TokenHash, TokenStore, UnixTime};
#[cfg(test)]
pub(crate) use ceremony::CEREMONY_LIFETIME_SECS;
pub(crate) use ceremony::{Ceremony, Purpose, mismatch, save, take};
pub(crate) use error::PasskeyError;

/// The owner approved one pending authorization request with a passkey, just now.
///
/// `AuthServer::approve` takes it and approves the request it names, and no other.
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
#[must_use = "an approval is spent by approving"]
#[derive(Debug)]
pub struct Approval {
    request: TokenHash,
}

impl Approval {
    /// An approval of `request_id` without an assertion, for the core's unit tests; it does not
    /// exist outside them.
    #[cfg(test)]
    pub(crate) fn for_tests(request_id: &str) -> Self {
        Self {
            request: TokenHash::of(request_id),
        }
    }

    /// The hash of the pending request's id.
    pub(crate) fn request(&self) -> &TokenHash {
        &self.request
    }
}

/// The owner signed in to the console with a passkey, just now. A console session is made from it.
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
#[must_use = "a sign-in is spent by starting a session"]
#[derive(Debug)]
pub struct SignIn {
    credential_id: String,
}

impl SignIn {
    /// The passkey that signed in.
    pub(crate) fn credential_id(&self) -> &str {
        &self.credential_id
    }
}

/// An existing passkey approved enrolling another, just now.
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
#[must_use = "an enrolment approval is spent by starting a registration"]
#[derive(Debug)]
pub struct Enrol {
    credential_id: String,
}

impl Enrol {
    /// The passkey that approved the enrolment; the enrolment holds only while it is registered.
    pub(crate) fn credential_id(&self) -> &str {
        &self.credential_id
    }
}

/// Checks assertions against the owner's passkeys: the relying party, the passkey store, and the
/// token store that keeps ceremonies.
pub(crate) struct Verifier {
    webauthn: Webauthn,
    store: Arc<dyn PasskeyStore>,
    tokens: Arc<dyn TokenStore>,
    audit: Audit,
    clock: Clock,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    pub(crate) fn new(
        webauthn: Webauthn,
        store: Arc<dyn PasskeyStore>,
        tokens: Arc<dyn TokenStore>,
        audit: Audit,
        clock: Clock,
    ) -> Self {
        Self {
            webauthn,
            store,
            tokens,
            audit,
            clock,
        }
    }

    /// The time by the server's clock.
    pub(crate) fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The relying party, for starting ceremonies.
    pub(crate) fn webauthn(&self) -> &Webauthn {
        &self.webauthn
    }

    pub(crate) fn store(&self) -> &dyn PasskeyStore {
        &*self.store
    }

    pub(crate) fn tokens(&self) -> &dyn TokenStore {
        &*self.tokens
    }

    pub(crate) fn audit(&self) -> &Audit {
        &self.audit
    }

    /// An assertion made to approve the pending request `request_id`.
    pub(crate) async fn approval(
        &self,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
        request_id: &str,
    ) -> Result<Approval, PasskeyError> {
        let request = TokenHash::of(request_id);
        let purpose = Purpose::Approve { request };
        self.verify(ceremony_id, credential, &purpose).await?;
        Ok(Approval { request })
    }

    /// An assertion made to sign in to the console.
    pub(crate) async fn sign_in(
        &self,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
    ) -> Result<SignIn, PasskeyError> {
        let credential_id = self
            .verify(ceremony_id, credential, &Purpose::Console)
            .await?;
        Ok(SignIn { credential_id })
    }

    /// An assertion made to approve enrolling another passkey.
    pub(crate) async fn enrolment(
        &self,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
    ) -> Result<Enrol, PasskeyError> {
        let credential_id = self
            .verify(ceremony_id, credential, &Purpose::Enrol)
            .await?;
        Ok(Enrol { credential_id })
    }

    /// Verify an assertion for a ceremony started for `purpose`, and record the use. Returns the
    /// credential id of the passkey that signed.
    async fn verify(
        &self,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
        purpose: &Purpose,
    ) -> Result<String, PasskeyError> {
        let Ceremony::Authentication {
            state,
            credentials,
            purpose: started_for,
        } = take(&*self.tokens, ceremony_id, self.now()).await?
        else {
            return Err(mismatch());
        };
        if &started_for != purpose {
            return Err(mismatch());
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
            at: self.now(),
        };
        if self.store.modify(&credential_id, &used).await?.is_none() {
            return Err(no_longer_registered());
        }
        Ok(credential_id)
    }

    /// Whether the passkey is still registered.
    pub(crate) async fn still_registered(&self, credential_id: &str) -> Result<bool, StoreError> {
        Ok(self.store.get(credential_id).await?.is_some())
    }

    /// Refuse a ceremony that did not verify, and record it.
    pub(crate) fn denied(&self, what: &'static str, error: &dyn std::fmt::Display) -> PasskeyError {
        tracing::debug!(target: "mcp_oauth::passkey", error = %error, "{what}");
        self.audit
            .emit(AuditEvent::PasskeyRejected { during: what });
        PasskeyError::Denied(what)
    }
}

fn no_longer_registered() -> PasskeyError {
    PasskeyError::Denied("this passkey is no longer registered")
}
