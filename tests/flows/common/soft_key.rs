//! A software passkey that keeps its credentials, as a phone or a security key does.
//!
//! webauthn-authenticator-rs's `SoftPasskey` refuses to make a resident (discoverable) credential
//! and signs only with a credential named in `allowCredentials`. The server asks for discoverable
//! credentials and names none, so this wrapper plays the resident part: it remembers each
//! credential it makes, with its relying party and user handle, offers them when a request names
//! none, and returns the user handle with the assertion, as WebAuthn §6.3.3 has authenticators do.

use webauthn_authenticator_rs::AuthenticatorBackend;
use webauthn_authenticator_rs::error::WebauthnCError;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs_proto::{
    AllowCredentials, PublicKeyCredential, PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions, RegisterPublicKeyCredential,
};

/// One credential the authenticator made.
#[derive(Debug)]
struct Resident {
    rp_id: String,
    credential_id: Vec<u8>,
    user_handle: Vec<u8>,
}

/// A soft passkey holding discoverable credentials.
pub(crate) struct SoftAuthenticator {
    keys: SoftPasskey,
    resident: Vec<Resident>,
}

impl SoftAuthenticator {
    /// `falsify_uv`: claim user verification (the server requires it).
    pub(crate) fn new(falsify_uv: bool) -> Self {
        Self {
            keys: SoftPasskey::new(falsify_uv),
            resident: Vec::new(),
        }
    }
}

impl AuthenticatorBackend for SoftAuthenticator {
    fn perform_register(
        &mut self,
        origin: url::Url,
        mut options: PublicKeyCredentialCreationOptions,
        timeout_ms: u32,
    ) -> Result<RegisterPublicKeyCredential, WebauthnCError> {
        // The resident part is this wrapper's; the inner key only makes the key pair.
        if let Some(selection) = options.authenticator_selection.as_mut() {
            selection.require_resident_key = false;
            selection.resident_key = None;
        }
        let rp_id = options.rp.id.clone();
        let user_handle = options.user.id.clone();
        let credential = self.keys.perform_register(origin, options, timeout_ms)?;
        self.resident.push(Resident {
            rp_id,
            credential_id: credential.raw_id.clone(),
            user_handle,
        });
        Ok(credential)
    }

    fn perform_auth(
        &mut self,
        origin: url::Url,
        mut options: PublicKeyCredentialRequestOptions,
        timeout_ms: u32,
    ) -> Result<PublicKeyCredential, WebauthnCError> {
        if options.allow_credentials.is_empty() {
            // Discoverable: offer this relying party's own credentials, the newest first.
            options.allow_credentials = self
                .resident
                .iter()
                .rev()
                .filter(|r| r.rp_id == options.rp_id)
                .map(|r| AllowCredentials {
                    type_: "public-key".to_owned(),
                    id: r.credential_id.clone(),
                    transports: None,
                })
                .collect();
            if options.allow_credentials.is_empty() {
                return Err(WebauthnCError::NoSelectedToken);
            }
        }
        let mut assertion = self.keys.perform_auth(origin, options, timeout_ms)?;
        assertion.response.user_handle = self
            .resident
            .iter()
            .find(|r| r.credential_id[..] == assertion.raw_id[..])
            .map(|r| r.user_handle.clone());
        Ok(assertion)
    }
}
