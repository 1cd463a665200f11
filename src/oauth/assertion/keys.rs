//! The public keys a client signs its assertions with (RFC 7517 JWK sets), and the rules every
//! set must meet wherever it comes from: a metadata document's `jwks`, or the set at its
//! `jwks_uri`.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use serde_json::Value;

use super::public_keys::PublicKeys;
use crate::oauth::client_format::Sent;
use crate::oauth::params::printable;

/// Members that only a private key has (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2), and `k`, the
/// value of a symmetric key: a set carrying any of them is a leaked secret, never a key to trust.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The most keys one set may hold: enough for rotation with overlap, not a search space.
pub(crate) const MAX_KEYS: usize = 16;

/// The signature algorithms a client assertion may use. HMAC (a shared secret) and `none` are
/// not among them, whatever a token header says.
pub(crate) const ALLOWED_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// The names of [`ALLOWED_ALGORITHMS`], for the discovery document.
pub(crate) const ALLOWED_ALGORITHM_NAMES: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

/// An algorithm name a client registered (`token_endpoint_auth_signing_alg`), if allowed.
pub(crate) fn allowed_algorithm(name: &str) -> Option<Algorithm> {
    ALLOWED_ALGORITHM_NAMES
        .iter()
        .position(|allowed| *allowed == name)
        .map(|i| ALLOWED_ALGORITHMS[i])
}

/// The `token_endpoint_auth_signing_alg` client metadata names (a registration or a metadata
/// document): `None` when absent (any allowed algorithm).
///
/// # Errors
///
/// A plain-words reason that starts with the member's name.
pub(crate) fn registered_algorithm(sent: &Sent<String>) -> Result<Option<Algorithm>, String> {
    match sent {
        Sent::Absent => Ok(None),
        Sent::Given(name) => allowed_algorithm(name).map(Some).ok_or_else(|| {
            format!(
                "token_endpoint_auth_signing_alg {} is not one of {}",
                printable(name),
                ALLOWED_ALGORITHM_NAMES.join(", ")
            )
        }),
        Sent::WrongType => Err("token_endpoint_auth_signing_alg is not a string".into()),
    }
}

/// Where a client's keys are.
#[derive(Clone, Debug)]
pub(crate) enum KeySource {
    /// In its registration (`jwks`), already checked by [`public_key_set`].
    Inline(Arc<PublicKeys>),
    /// At this URL (`jwks_uri`), fetched when needed.
    Uri(String),
}

/// How a client may prove itself with a signed assertion (`private_key_jwt`, RFC 7523).
#[derive(Clone, Debug)]
pub(crate) struct AssertionRules {
    pub(crate) keys: KeySource,
    /// The registered `token_endpoint_auth_signing_alg`; `None`: any of [`ALLOWED_ALGORITHMS`].
    pub(crate) algorithm: Option<Algorithm>,
    /// The client registered `private_key_jwt` and no other method: an assertion is the only
    /// way in (no downgrade to `none`).
    pub(crate) required: bool,
}

/// Read a JWK set: a JSON object whose `keys` is a list of public signing keys. A key with a
/// private member, or a symmetric key, refuses the whole set (whoever published it leaked a
/// secret). Keys this server cannot use (another key type, `use: enc`) are left out.
///
/// # Errors
///
/// A plain-words reason, naming the rule broken.
pub(crate) fn public_key_set(value: &Value) -> Result<PublicKeys, String> {
    let Some(keys) = value.get("keys").and_then(Value::as_array) else {
        return Err("the JWK set has no keys list".into());
    };
    if keys.len() > MAX_KEYS {
        return Err(format!("the JWK set holds more than {MAX_KEYS} keys"));
    }
    let mut usable = Vec::new();
    for key in keys {
        let Some(members) = key.as_object() else {
            return Err("a key in the JWK set is not a JSON object".into());
        };
        if members.get("kty").and_then(Value::as_str) == Some("oct") {
            return Err("the JWK set holds a symmetric key (kty oct)".into());
        }
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| members.contains_key(**m)) {
            return Err(format!(
                "the JWK set holds private key material (member {member})"
            ));
        }
        if let Ok(jwk) = serde_json::from_value::<Jwk>(key.clone())
            && matches!(
                jwk.common.public_key_use,
                None | Some(PublicKeyUse::Signature)
            )
            && matches!(
                jwk.algorithm,
                AlgorithmParameters::RSA(_)
                    | AlgorithmParameters::EllipticCurve(_)
                    | AlgorithmParameters::OctetKeyPair(_)
            )
        {
            usable.push(jwk);
        }
    }
    Ok(PublicKeys::new(usable))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn public_keys_are_read_and_unusable_ones_left_out() {
        let set = public_key_set(&json!({ "keys": [
            { "kty": "RSA", "kid": "a", "n": N, "e": "AQAB", "use": "sig", "alg": "RS256" },
            { "kty": "RSA", "kid": "enc", "n": N, "e": "AQAB", "use": "enc" },
            { "kty": "XYZ", "kid": "odd" },
        ]}))
        .unwrap();
        assert_eq!(set.to_jwk_set().keys.len(), 1);
        assert!(set.find("a").is_some());
    }

    #[test]
    fn private_or_symmetric_keys_refuse_the_set() {
        for (key, expected) in [
            (json!({ "kty": "oct", "k": "c2VjcmV0" }), "symmetric"),
            (json!({ "kty": "oct" }), "symmetric"),
            (
                json!({ "kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "c" }),
                "member d",
            ),
            (
                json!({ "kty": "RSA", "n": N, "e": "AQAB", "p": "x", "q": "y" }),
                "member p",
            ),
            (
                json!({ "kty": "OKP", "crv": "Ed25519", "x": "a", "d": "b" }),
                "member d",
            ),
        ] {
            let error = public_key_set(&json!({ "keys": [key] })).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
        assert!(public_key_set(&json!({ "nokeys": [] })).is_err());
        let many: Vec<Value> = (0..=MAX_KEYS).map(|_| json!({ "kty": "RSA" })).collect();
        assert!(public_key_set(&json!({ "keys": many })).is_err());
    }

    #[test]
    fn hmac_and_none_are_never_allowed() {
        for name in ["HS256", "HS384", "HS512", "none", "RS384", "ES384"] {
            assert!(allowed_algorithm(name).is_none(), "{name}");
        }
        for name in ALLOWED_ALGORITHM_NAMES {
            assert!(allowed_algorithm(name).is_some(), "{name}");
        }
    }
}
