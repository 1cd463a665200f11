//! Thin wrappers over crate-private pure rules, for the fuzz targets in `fuzz/` and the property
//! tests, and the proofs of the owner's presence, for the examples that show they cannot be forged.
//! Only with the non-default `fuzzing` feature; not part of the supported API.

/// RFC 7636 §4.1 verifier syntax, as the token endpoint checks it.
pub fn pkce_verifier_is_valid(verifier: &str) -> bool {
    crate::oauth::pkce::is_valid_verifier(verifier)
}

/// The authorization request's PKCE check: `Ok` with the stored challenge, or the error returned.
///
/// # Errors
///
/// The error code and description the authorization endpoint returns.
pub fn pkce_check_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<String, (&'static str, String)> {
    crate::oauth::pkce::check_challenge(challenge, method)
        .map_err(|error| (error.code.as_str(), error.description.into_owned()))
}

/// Whether `verifier` hashes (S256) to `challenge`, compared in constant time.
pub fn pkce_verify(verifier: &str, challenge: &str) -> bool {
    crate::oauth::pkce::verify(verifier, challenge)
}

/// Whether a client may register `uri` as a redirect URI, given the allowed private-use URIs.
///
/// # Errors
///
/// The sentence the registration endpoint returns.
pub fn redirect_validate_registrable(uri: &str, native_allowlist: &[String]) -> Result<(), String> {
    crate::rules::redirect_uri::validate_registrable(uri, native_allowlist)
}

/// Whether a requested redirect URI matches a registered one.
pub fn redirect_matches(registered: &str, requested: &str) -> bool {
    crate::rules::redirect_uri::matches(registered, requested)
}

/// The proofs of the owner's presence, shown here only so that these examples can check, against
/// the public API as any outside code sees it, that none can be made by hand. Inside the crate,
/// approving a request takes an [`Approval`](presence::Approval), starting a console session a
/// [`SignIn`](presence::SignIn), and enrolling a passkey an [`Enrol`](presence::Enrol) or a
/// [`LiveSession`](presence::LiveSession) (or the setup token); only the check of a passkey
/// assertion made for that purpose, or the session lookup, returns one.
///
/// An approval of a pending request cannot be written by hand:
///
/// ```compile_fail,E0451
/// use mcp_oauth::fuzzing::presence::Approval;
/// use mcp_oauth::store::TokenHash;
///
/// let forged = Approval { request: TokenHash::of("mcp_rq_any-request") };
/// ```
///
/// Nor a console sign-in, from which a console session is made:
///
/// ```compile_fail,E0451
/// use mcp_oauth::fuzzing::presence::SignIn;
///
/// let forged = SignIn { credential_id: "a-credential-id".to_owned() };
/// ```
///
/// Nor an existing passkey's approval to enrol another:
///
/// ```compile_fail,E0451
/// use mcp_oauth::fuzzing::presence::Enrol;
///
/// let forged = Enrol { credential_id: "a-credential-id".to_owned() };
/// ```
///
/// Nor a live console session, which also authorises enrolling a passkey:
///
/// ```compile_fail,E0451
/// use mcp_oauth::fuzzing::presence::LiveSession;
///
/// fn forge(real: LiveSession, signed_in_with: &str) -> LiveSession {
///     LiveSession { credential_id: signed_in_with.to_owned(), ..real }
/// }
/// ```
///
/// A proof is spent once: it cannot be copied,
///
/// ```compile_fail,E0599
/// use mcp_oauth::fuzzing::presence::Approval;
///
/// fn approve_twice(approval: Approval) -> (Approval, Approval) {
///     (approval.clone(), approval)
/// }
/// ```
///
/// made up as a default,
///
/// ```compile_fail,E0599
/// let forged = mcp_oauth::fuzzing::presence::SignIn::default();
/// ```
///
/// or read from data:
///
/// ```compile_fail,E0277
/// let forged: mcp_oauth::fuzzing::presence::Approval =
///     serde_json::from_str(r#"{"request":[0]}"#).unwrap();
/// ```
pub mod presence {
    pub use crate::presence::session::LiveSession;
    pub use crate::presence::{Approval, Enrol, SignIn};
}
