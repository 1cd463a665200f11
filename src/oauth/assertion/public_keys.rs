//! A client's public signing keys, each made ready to verify once and kept with its set.
//!
//! A key set is registered or fetched once and then checks every assertion its client signs.
//! Building an aws-lc key from a JWK at each check (what `jsonwebtoken::decode` does) also
//! builds the RSA Montgomery context anew, a tenth of an RS256 verify; a parsed key keeps it.
//! `jsonwebtoken` reads the JWK ([`DecodingKey::from_jwk`]); aws-lc-rs, its own backend,
//! verifies.

use std::fmt;
use std::sync::OnceLock;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

use super::keys::ALLOWED_ALGORITHMS;

/// The usable public signing keys of a set that passed
/// [`public_key_set`](super::keys::public_key_set).
#[derive(Debug, Default)]
pub(crate) struct PublicKeys {
    keys: Vec<PublicKey>,
}

/// One public key, and what it is ready to verify.
pub(crate) struct PublicKey {
    jwk: Jwk,
    /// By [`ALLOWED_ALGORITHMS`] index, filled on first use (a set of [`MAX_KEYS`] RSA keys
    /// holds at most twice that many parsed keys): the key made ready for that algorithm, or
    /// `None` when it cannot verify it (another key type, a malformed value).
    ///
    /// [`MAX_KEYS`]: super::keys::MAX_KEYS
    ready: [OnceLock<Option<ParsedPublicKey>>; ALLOWED_ALGORITHMS.len()],
}

impl PublicKeys {
    pub(crate) fn new(jwks: Vec<Jwk>) -> Self {
        let keys = jwks
            .into_iter()
            .map(|jwk| PublicKey {
                jwk,
                ready: Default::default(),
            })
            .collect();
        Self { keys }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key with this `kid`.
    pub(crate) fn find(&self, kid: &str) -> Option<&PublicKey> {
        self.keys
            .iter()
            .find(|key| key.jwk.common.key_id.as_deref() == Some(kid))
    }

    /// The set's key when it holds exactly one.
    pub(crate) fn only(&self) -> Option<&PublicKey> {
        match self.keys.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// The keys as a JWK set, to be kept or shown.
    pub(crate) fn to_jwk_set(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(|key| key.jwk.clone()).collect(),
        }
    }
}

impl PublicKey {
    pub(crate) fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// This key, ready to verify signatures by `algorithm`; `None` if it cannot (an algorithm
    /// that is not allowed, a key of another type, a malformed key).
    pub(crate) fn verifier(&self, algorithm: Algorithm) -> Option<&ParsedPublicKey> {
        let slot = ALLOWED_ALGORITHMS.iter().position(|a| *a == algorithm)?;
        self.ready[slot]
            .get_or_init(|| ready_for(&self.jwk, algorithm))
            .as_ref()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.jwk.common.key_id)
            .finish_non_exhaustive()
    }
}

/// The aws-lc key for `jwk` under `algorithm`, with the parameters `jsonwebtoken`'s aws-lc
/// backend verifies that algorithm with (RSA keys of 2048 bits or more).
fn ready_for(jwk: &Jwk, algorithm: Algorithm) -> Option<ParsedPublicKey> {
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let rsa = |params| match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(params)
            .ok(),
        DecodingKeyKind::SecretOrDer(_) => None,
    };
    let raw = |params| match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => ParsedPublicKey::new(params, bytes).ok(),
        DecodingKeyKind::RsaModulusExponent { .. } => None,
    };
    // `from_jwk` reads a raw key's coordinates whatever its `crv` says: the curve is checked
    // here, so that a key is only ever used as what its JWK declares it to be.
    let curve = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(params) => Some(&params.curve),
        AlgorithmParameters::OctetKeyPair(params) => Some(&params.curve),
        _ => None,
    };
    match (algorithm, key.family(), curve) {
        (Algorithm::RS256, _, None) => rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        (Algorithm::PS256, _, None) => rsa(&signature::RSA_PSS_2048_8192_SHA256),
        // An uncompressed P-256 point; a point off the curve is refused when parsed.
        (Algorithm::ES256, jsonwebtoken::AlgorithmFamily::Ec, Some(EllipticCurve::P256)) => {
            raw(&signature::ECDSA_P256_SHA256_FIXED)
        }
        (Algorithm::EdDSA, jsonwebtoken::AlgorithmFamily::Ed, Some(EllipticCurve::Ed25519)) => {
            raw(&signature::ED25519)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
        RSA_PSS_SHA256, RsaKeyPair,
    };
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    use super::*;

    const MESSAGE: &[u8] = b"header.payload";

    fn key(value: Value) -> PublicKey {
        let jwk: Jwk = serde_json::from_value(value).unwrap();
        PublicKeys::new(vec![jwk]).keys.pop().unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// `key` verifies `signature` by `algorithm` and by no other algorithm; a changed message
    /// does not verify.
    fn verifies_only(key: &PublicKey, algorithm: Algorithm, signature: &[u8]) {
        let verifier = key.verifier(algorithm).expect("ready for its algorithm");
        assert!(
            verifier.verify_sig(MESSAGE, signature).is_ok(),
            "{algorithm:?}"
        );
        assert!(verifier.verify_sig(b"header.other", signature).is_err());
        for other in ALLOWED_ALGORITHMS.iter().filter(|a| **a != algorithm) {
            let verified = key
                .verifier(*other)
                .is_some_and(|v| v.verify_sig(MESSAGE, signature).is_ok());
            assert!(!verified, "{algorithm:?} signature verified as {other:?}");
        }
        // Never HMAC, whatever the key.
        assert!(key.verifier(Algorithm::HS256).is_none());
    }

    #[test]
    fn each_key_type_verifies_its_algorithm() {
        let rng = SystemRandom::new();
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let public: aws_lc_rs::rsa::PublicKeyComponents<Vec<u8>> = rsa.public_key().into();
        let rsa_key = key(json!({ "kty": "RSA", "n": b64(&public.n), "e": b64(&public.e) }));
        for (algorithm, encoding) in [
            (Algorithm::RS256, &RSA_PKCS1_SHA256),
            (Algorithm::PS256, &RSA_PSS_SHA256),
        ] {
            let mut signature = vec![0; rsa.public_modulus_len()];
            rsa.sign(encoding, &rng, MESSAGE, &mut signature).unwrap();
            let verifier = rsa_key.verifier(algorithm).unwrap();
            assert!(
                verifier.verify_sig(MESSAGE, &signature).is_ok(),
                "{algorithm:?}"
            );
            assert!(verifier.verify_sig(b"header.other", &signature).is_err());
            assert!(rsa_key.verifier(Algorithm::ES256).is_none());
            assert!(rsa_key.verifier(Algorithm::EdDSA).is_none());
        }

        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = ec.public_key().as_ref();
        let ec_key = key(json!({
            "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]),
        }));
        verifies_only(
            &ec_key,
            Algorithm::ES256,
            ec.sign(&rng, MESSAGE).unwrap().as_ref(),
        );

        let ed = Ed25519KeyPair::generate().unwrap();
        let ed_key = key(json!({
            "kty": "OKP", "crv": "Ed25519", "x": b64(ed.public_key().as_ref()),
        }));
        verifies_only(&ed_key, Algorithm::EdDSA, ed.sign(MESSAGE).as_ref());
    }

    #[test]
    fn a_key_verifies_only_as_the_curve_its_jwk_names() {
        let rng = SystemRandom::new();
        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = ec.public_key().as_ref();
        let signature = ec.sign(&rng, MESSAGE).unwrap();
        for crv in ["P-384", "Ed25519"] {
            let key = key(json!({
                "kty": "EC", "crv": crv, "x": b64(&point[1..33]), "y": b64(&point[33..]),
            }));
            let verified = key
                .verifier(Algorithm::ES256)
                .is_some_and(|v| v.verify_sig(MESSAGE, signature.as_ref()).is_ok());
            assert!(!verified, "a P-256 point labelled {crv} verified ES256");
        }
        let ed = Ed25519KeyPair::generate().unwrap();
        let key = key(json!({ "kty": "OKP", "crv": "P-256", "x": b64(ed.public_key().as_ref()) }));
        assert!(key.verifier(Algorithm::EdDSA).is_none());
    }

    #[test]
    fn a_malformed_key_verifies_nothing() {
        for jwk in [
            json!({ "kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ" }),
            json!({ "kty": "OKP", "crv": "Ed25519", "x": "AQ" }),
            json!({ "kty": "RSA", "n": "AA", "e": "AQAB" }),
        ] {
            let key = key(jwk.clone());
            for algorithm in ALLOWED_ALGORITHMS {
                assert!(key.verifier(algorithm).is_none(), "{jwk} {algorithm:?}");
            }
        }
    }
}
