//! Checking one client assertion (RFC 7523 §3) against a client's keys: the signature by
//! aws-lc-rs, with the algorithm the client registered or one of the allowed ones, never
//! whatever the header asks for; then every claim, by the server's clock.

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::KeyAlgorithm;
use serde_json::Value;

use super::compact::{Assertion, Claims};
use super::keys::ALLOWED_ALGORITHMS;
use super::public_keys::{PublicKey, PublicKeys};
use crate::store::UnixTime;

/// How far a client's clock may be ahead of ours (`nbf`, `iat`) or behind it (`exp`).
pub(crate) const CLOCK_SKEW_SECS: u64 = 30;

/// The furthest ahead an `exp` may be: an assertion is for one request, and its `jti` is kept
/// until then.
pub(crate) const MAX_LIFETIME_SECS: u64 = 300;

/// The longest `jti` accepted.
const MAX_JTI_BYTES: usize = 256;

/// The longest `kid` accepted: a key id is a short name, and an unknown one is remembered (to
/// refetch a client's key set once per key id), so it must not be a megabyte.
pub(crate) const MAX_KID_BYTES: usize = 256;

/// How much longer than the last second an assertion is accepted its `jti` is remembered: the
/// verdict and the record of the use may fall in different seconds, and instances sharing a
/// store (Redis expires keys by its own clock) may disagree on the time by a little.
const JTI_MARGIN_SECS: u64 = 60;

/// What the assertion must say.
#[derive(Debug)]
pub(crate) struct Expected<'a> {
    pub(crate) client_id: &'a str,
    /// The issuer and the token endpoint URL: either may be the audience.
    pub(crate) audiences: [&'a str; 2],
    pub(crate) algorithm: Option<Algorithm>,
    pub(crate) now: UnixTime,
}

/// A good assertion: what single use needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    pub(crate) jti: String,
    /// Until when the `jti` must be remembered: a minute past the last second the assertion is
    /// accepted.
    pub(crate) remember_until: UnixTime,
}

/// Why an assertion was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The header names a key id the set does not hold: the client may have rotated its keys.
    UnknownKey(String),
    /// Any other failed check, in plain words naming it.
    Refused(String),
}

fn refused(reason: impl Into<String>) -> Failure {
    Failure::Refused(reason.into())
}

/// Verify `assertion` against `keys`.
///
/// # Errors
///
/// The first check that failed.
pub(crate) fn verify(
    assertion: &Assertion,
    keys: &PublicKeys,
    expected: &Expected<'_>,
) -> Result<Verified, Failure> {
    // The header is read only to learn its algorithm and key id; both are checked against what
    // the client registered before anything is trusted.
    let header = assertion.header().ok_or_else(|| {
        refused(
            "the assertion is not a signed JWT with a supported algorithm (alg none is refused)",
        )
    })?;
    if !ALLOWED_ALGORITHMS.contains(&header.alg) {
        return Err(refused(format!(
            "the assertion's algorithm {:?} is not allowed (RS256, PS256, ES256 or EdDSA only)",
            header.alg
        )));
    }
    if expected
        .algorithm
        .is_some_and(|registered| registered != header.alg)
    {
        return Err(refused(format!(
            "the assertion's algorithm {:?} is not the one the client registered",
            header.alg
        )));
    }
    if header
        .kid
        .as_ref()
        .is_some_and(|kid| kid.len() > MAX_KID_BYTES)
    {
        return Err(refused(format!(
            "the assertion's kid is longer than {MAX_KID_BYTES} bytes"
        )));
    }
    let key = key_for(keys, header.kid.as_deref())?;
    if key
        .jwk()
        .common
        .key_algorithm
        .is_some_and(|alg| alg != KeyAlgorithm::from(header.alg))
    {
        return Err(refused(
            "the assertion's algorithm is not the one its key is for",
        ));
    }
    // A key of another type than the algorithm, or a malformed one, verifies nothing.
    let signature_ok = match (key.verifier(header.alg), assertion.signature()) {
        (Some(verifier), Some(signature)) => verifier
            .verify_sig(assertion.signing_input(), &signature)
            .is_ok(),
        _ => false,
    };
    if !signature_ok {
        return Err(refused(
            "the assertion's signature does not verify with the client's key",
        ));
    }
    check_claims(assertion.claims(), expected)
}

/// The key the header names; without a `kid`, the set's only key.
fn key_for<'k>(keys: &'k PublicKeys, kid: Option<&str>) -> Result<&'k PublicKey, Failure> {
    match kid {
        Some(kid) => keys
            .find(kid)
            .ok_or_else(|| Failure::UnknownKey(kid.to_owned())),
        None => keys.only().ok_or_else(|| {
            refused("the assertion names no kid, and the client has more than one key")
        }),
    }
}

fn check_claims(claims: &Claims, expected: &Expected<'_>) -> Result<Verified, Failure> {
    fn text(claim: &Option<Value>) -> Option<&str> {
        claim.as_ref().and_then(Value::as_str)
    }
    if text(&claims.iss) != Some(expected.client_id) {
        return Err(refused("the assertion's iss is not the client_id"));
    }
    if text(&claims.sub) != Some(expected.client_id) {
        return Err(refused("the assertion's sub is not the client_id"));
    }
    let audience_ok = match &claims.aud {
        Some(Value::String(aud)) => expected.audiences.contains(&aud.as_str()),
        Some(Value::Array(auds)) => auds
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| expected.audiences.contains(&aud)),
        _ => false,
    };
    if !audience_ok {
        return Err(refused(
            "the assertion's aud names neither this server's issuer nor its token endpoint",
        ));
    }
    let now = expected.now.0;
    let time = |name: &str, claim: &Option<Value>| -> Result<Option<u64>, Failure> {
        match claim {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or_else(|| refused(format!("the assertion's {name} is not a time"))),
        }
    };
    let Some(exp) = time("exp", &claims.exp)? else {
        return Err(refused("the assertion has no exp"));
    };
    if exp.saturating_add(CLOCK_SKEW_SECS) <= now {
        return Err(refused("the assertion has expired (exp)"));
    }
    if exp > now.saturating_add(MAX_LIFETIME_SECS + CLOCK_SKEW_SECS) {
        return Err(refused(format!(
            "the assertion's exp is more than {MAX_LIFETIME_SECS} seconds ahead"
        )));
    }
    if time("nbf", &claims.nbf)?.is_some_and(|nbf| nbf > now.saturating_add(CLOCK_SKEW_SECS)) {
        return Err(refused("the assertion is not valid yet (nbf)"));
    }
    if time("iat", &claims.iat)?.is_some_and(|iat| iat > now.saturating_add(CLOCK_SKEW_SECS)) {
        return Err(refused("the assertion was issued in the future (iat)"));
    }
    let jti = match text(&claims.jti) {
        Some(jti) if !jti.is_empty() && jti.len() <= MAX_JTI_BYTES => jti,
        _ => return Err(refused("the assertion has no jti, or an unusable one")),
    };
    Ok(Verified {
        jti: jti.to_owned(),
        remember_until: UnixTime(
            exp.saturating_add(CLOCK_SKEW_SECS)
                .saturating_add(JTI_MARGIN_SECS),
        ),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: UnixTime = UnixTime(1_800_000_000);
    const ID: &str = "https://client.example/meta";

    fn expected() -> Expected<'static> {
        Expected {
            client_id: ID,
            audiences: ["https://as.example", "https://as.example/token"],
            algorithm: None,
            now: NOW,
        }
    }

    fn claims(changes: Value) -> Claims {
        let mut claims = json!({
            "iss": ID, "sub": ID, "aud": "https://as.example/token",
            "exp": NOW.0 + 60, "iat": NOW.0, "jti": "j1",
        });
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        serde_json::from_value(claims).unwrap()
    }

    #[test]
    fn good_claims() {
        for changes in [
            json!({}),
            json!({ "aud": "https://as.example" }),
            json!({ "aud": ["https://other.example", "https://as.example"] }),
            json!({ "exp": NOW.0 + MAX_LIFETIME_SECS, "nbf": NOW.0 + 10, "iat": null }),
            json!({ "exp": NOW.0 - 10 }),
        ] {
            let verified = check_claims(&claims(changes.clone()), &expected());
            assert!(verified.is_ok(), "{changes}: {verified:?}");
        }
        assert_eq!(
            check_claims(&claims(json!({})), &expected()).unwrap(),
            Verified {
                jti: "j1".into(),
                remember_until: UnixTime(NOW.0 + 60 + CLOCK_SKEW_SECS + JTI_MARGIN_SECS)
            }
        );
    }

    #[test]
    fn each_claim_is_checked_and_named() {
        for (changes, named) in [
            (json!({ "iss": "https://evil.example" }), "iss"),
            (json!({ "iss": null }), "iss"),
            (json!({ "sub": "someone" }), "sub"),
            (json!({ "aud": "https://as.example/other" }), "aud"),
            (json!({ "aud": ["https://x.example"] }), "aud"),
            (json!({ "aud": null }), "aud"),
            (json!({ "exp": null }), "no exp"),
            (json!({ "exp": "soon" }), "exp is not a time"),
            (json!({ "exp": NOW.0 - CLOCK_SKEW_SECS }), "expired"),
            (
                json!({ "exp": NOW.0 + MAX_LIFETIME_SECS + CLOCK_SKEW_SECS + 1 }),
                "ahead",
            ),
            (json!({ "nbf": NOW.0 + CLOCK_SKEW_SECS + 1 }), "nbf"),
            (json!({ "iat": NOW.0 + CLOCK_SKEW_SECS + 1 }), "iat"),
            (json!({ "jti": null }), "jti"),
            (json!({ "jti": "" }), "jti"),
            (json!({ "jti": "j".repeat(MAX_JTI_BYTES + 1) }), "jti"),
        ] {
            match check_claims(&claims(changes.clone()), &expected()) {
                Err(Failure::Refused(reason)) => {
                    assert!(reason.contains(named), "{changes}: {reason}");
                }
                other => panic!("{changes}: {other:?}"),
            }
        }
    }
}
