//! Thin wrappers over crate-private pure rules, for the fuzz targets in `fuzz/` and the property
//! tests. Only with the non-default `fuzzing` feature; not part of the supported API.

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
