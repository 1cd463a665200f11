//! Test keys for client assertions (`private_key_jwt`), generated at test time with aws-lc-rs
//! (the same library the server verifies with, through jsonwebtoken), and JWTs signed by hand so
//! that a test can also build what no honest library would: `alg: none`, HS256 with a public key
//! as the secret, a header naming one key and signed by another.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RSA_PSS_SHA256, RsaKeyPair, RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A client's private key, with the key id it publishes.
pub(crate) struct TestKey {
    pub(crate) kid: String,
    pair: Pair,
}

impl TestKey {
    pub(crate) fn rsa(kid: &str) -> Self {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        Self {
            kid: kid.into(),
            pair: Pair::Rsa(pair),
        }
    }

    /// An RSA key from its PKCS#8 form ([`Self::rsa_pkcs8`]), so that another process can sign
    /// as the same client.
    pub(crate) fn rsa_from_pkcs8(kid: &str, der: &[u8]) -> Self {
        Self {
            kid: kid.into(),
            pair: Pair::Rsa(RsaKeyPair::from_pkcs8(der).unwrap()),
        }
    }

    /// The PKCS#8 form of an RSA key.
    pub(crate) fn rsa_pkcs8(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Rsa(pair) => AsDer::<Pkcs8V1Der<'_>>::as_der(pair)
                .unwrap()
                .as_ref()
                .to_vec(),
            _ => panic!("not an RSA key"),
        }
    }

    pub(crate) fn ec(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Self {
            kid: kid.into(),
            pair: Pair::Ec(pair),
        }
    }

    pub(crate) fn ed(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            pair: Pair::Ed(Ed25519KeyPair::generate().unwrap()),
        }
    }

    /// The public JWK, as a client publishes it.
    pub(crate) fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Rsa(pair) => {
                let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({ "kty": "RSA", "kid": self.kid, "use": "sig", "n": b64(&public.n), "e": b64(&public.e) })
            }
            Pair::Ec(pair) => {
                let point = pair.public_key().as_ref();
                json!({ "kty": "EC", "crv": "P-256", "kid": self.kid, "x": b64(&point[1..33]), "y": b64(&point[33..65]) })
            }
            Pair::Ed(pair) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": b64(pair.public_key().as_ref()) })
            }
        }
    }

    /// The JWK set of this key alone.
    pub(crate) fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    /// The algorithm this key signs with by default.
    pub(crate) fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Rsa(_) => "RS256",
            Pair::Ec(_) => "ES256",
            Pair::Ed(_) => "EdDSA",
        }
    }

    /// `claims` signed with `alg` (RS256 or PS256 for RSA keys), the header naming `kid`.
    pub(crate) fn sign_as(&self, alg: &str, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({ "alg": alg, "typ": "JWT" });
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        self.sign_with_header(&header, claims)
    }

    /// `claims` under exactly this `header` (whose `alg` must suit the key).
    pub(crate) fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let alg = header["alg"].as_str().unwrap_or_default();
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = match (&self.pair, alg) {
            (Pair::Rsa(pair), "RS256" | "PS256") => {
                let padding: &'static dyn aws_lc_rs::signature::RsaEncoding = if alg == "RS256" {
                    &RSA_PKCS1_SHA256
                } else {
                    &RSA_PSS_SHA256
                };
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    padding,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut signature,
                )
                .unwrap();
                signature
            }
            (Pair::Ec(pair), "ES256") => pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            (Pair::Ed(pair), "EdDSA") => pair.sign(input.as_bytes()).as_ref().to_vec(),
            _ => panic!("{alg} with this key"),
        };
        format!("{input}.{}", b64(&signature))
    }

    /// Raw header and claims JSON texts (duplicate members allowed), signed with `alg`.
    pub(crate) fn sign_raw(&self, alg: &str, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let signature = match (&self.pair, alg) {
            (Pair::Rsa(pair), "RS256") => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut signature,
                )
                .unwrap();
                signature
            }
            (Pair::Ec(pair), "ES256") => pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            (Pair::Ed(pair), "EdDSA") => pair.sign(input.as_bytes()).as_ref().to_vec(),
            _ => panic!("{alg} with this key"),
        };
        format!("{input}.{}", b64(&signature))
    }

    /// `claims` signed as this key normally signs, naming its own kid.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg(), Some(&self.kid.clone()), claims)
    }
}

/// An HS256 JWT with `secret` as the HMAC key: the classic confusion attack when `secret` is the
/// client's published public key.
pub(crate) fn hs256(secret: &[u8], kid: &str, claims: &Value) -> String {
    let header = json!({ "alg": "HS256", "typ": "JWT", "kid": kid });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// An unsigned JWT (`alg: none`).
pub(crate) fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({ "alg": "none", "typ": "JWT", "kid": kid });
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// Claims a well-behaved client sends: `iss` = `sub` = its id, the token endpoint as audience,
/// a minute to live from `now`, a fresh `jti`.
pub(crate) fn claims(client_id: &str, now: u64) -> Value {
    let jti: [u8; 16] = rand::random();
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": format!("{}/token", super::SERVER_URL),
        "iat": now,
        "exp": now + 60,
        "jti": b64(&jti),
    })
}

/// The current Unix time, for servers on the system clock.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
