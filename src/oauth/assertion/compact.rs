//! A client assertion as presented: a JWS in compact serialization (RFC 7515 §7.1), split and
//! decoded once, when the request is read. Nothing in it is trusted until
//! [`verify`](super::verify::verify) has checked its signature.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::Deserializer as _;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// An assertion whose claims could be read.
pub(crate) struct Assertion {
    text: String,
    /// Where the signing input (`header.payload`) ends in `text`.
    signed_len: usize,
    /// `None` when the header is not a JOSE header this server understands: an unsupported
    /// algorithm (`alg: none` among them), a member twice, an extension. Refused once the client
    /// is known, so that it counts against its budget.
    header: Option<Header>,
    claims: Claims,
}

/// The JOSE header members this server acts on (RFC 7515 §4.1). Any other member is ignored: no
/// key is ever taken from the header (`jwk`, `jku`, `x5u`, `x5c`), only from the client's set.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    /// Refuses any algorithm `jsonwebtoken` does not name, `none` among them.
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    /// Present (any value, `null` too): an extension this server must understand, and it
    /// understands none.
    #[serde(default)]
    crit: Member,
    /// RFC 7797: anything but `true` (`false` would change what the signature signs).
    #[serde(default)]
    b64: Member,
}

/// A header member as sent: `Some` when present, whatever its value (`null` included, which
/// `Option` would read as absent).
#[derive(Debug, Default)]
struct Member(Option<Value>);

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|value| Self(Some(value)))
    }
}

/// The claims RFC 7523 §3 rules on, each as sent (their types are checked with the claim). A
/// claim sent twice makes the whole set unreadable: which of two `iss` is meant is never a guess.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Claims {
    pub(crate) iss: Option<Value>,
    pub(crate) sub: Option<Value>,
    pub(crate) aud: Option<Value>,
    pub(crate) exp: Option<Value>,
    pub(crate) nbf: Option<Value>,
    pub(crate) iat: Option<Value>,
    pub(crate) jti: Option<Value>,
}

impl Assertion {
    /// Split and decode `text`; `None` unless it has three parts and its payload is a JSON
    /// object that names no claim twice.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let claims = URL_SAFE_NO_PAD.decode(payload).ok()?;
        if !names_each_member_once(&claims) {
            return None;
        }
        let claims = serde_json::from_slice(&claims).ok()?;
        let header_len = header.len();
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .filter(|json| names_each_member_once(json))
            .and_then(|json| serde_json::from_slice::<Header>(&json).ok())
            .filter(Header::understood);
        Some(Self {
            text: text.to_owned(),
            signed_len: header_len + 1 + payload.len(),
            header,
            claims,
        })
    }

    /// The `iss` claim, unverified: which client claims to have signed it.
    pub(crate) fn issuer(&self) -> Option<&str> {
        self.claims.iss.as_ref()?.as_str()
    }

    pub(crate) fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    pub(crate) fn claims(&self) -> &Claims {
        &self.claims
    }

    /// What the signature signs: `header.payload`, as sent.
    pub(crate) fn signing_input(&self) -> &[u8] {
        &self.text.as_bytes()[..self.signed_len]
    }

    /// The signature's bytes; `None` when it is not base64url.
    pub(crate) fn signature(&self) -> Option<Vec<u8>> {
        URL_SAFE_NO_PAD
            .decode(&self.text[self.signed_len + 1..])
            .ok()
    }
}

/// Whether `json` is an object that names no member twice, whether this server reads the member
/// or not (serde keeps the last of two, silently): which of two values is meant is never a guess.
fn names_each_member_once(json: &[u8]) -> bool {
    struct Distinct;
    impl<'de> Visitor<'de> for Distinct {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object naming each member once")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = HashSet::new();
            while let Some(name) = map.next_key::<Cow<'de, str>>()? {
                if !seen.insert(name) {
                    return Err(serde::de::Error::custom("a member named twice"));
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }
    let mut reader = serde_json::Deserializer::from_slice(json);
    reader.deserialize_map(Distinct).is_ok()
}

impl Header {
    /// Whether this server understands every part of the header: it implements no JWS
    /// extension, so a `crit` list refuses it (RFC 7515 §4.1.11), and so does `b64` other than
    /// true.
    fn understood(&self) -> bool {
        self.crit.0.is_none() && matches!(self.b64.0, None | Some(Value::Bool(true)))
    }
}

/// An assertion is a credential until its `jti` is recorded: its text is never printed.
impl fmt::Debug for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assertion")
            .field("alg", &self.header.as_ref().map(|h| h.alg))
            .field("kid", &self.header.as_ref().and_then(|h| h.kid.as_deref()))
            .field("iss", &self.issuer())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn the_parts_are_read_once() {
        let header = encoded(r#"{"alg":"RS256","kid":"k1"}"#);
        let payload = encoded(r#"{"iss":"client","jti":"j"}"#);
        let text = format!("{header}.{payload}.c2ln");
        let assertion = Assertion::parse(&text).unwrap();
        assert_eq!(assertion.issuer(), Some("client"));
        assert_eq!(
            assertion.header().unwrap().kid.as_deref(),
            Some("k1"),
            "{assertion:?}"
        );
        assert_eq!(
            assertion.signing_input(),
            format!("{header}.{payload}").as_bytes()
        );
        assert_eq!(assertion.signature().unwrap(), b"sig");
        assert!(!format!("{assertion:?}").contains(&payload));
    }

    #[test]
    fn what_is_not_a_compact_jws_is_not_read() {
        let payload = encoded(r#"{"iss":"client"}"#);
        let header = encoded(r#"{"alg":"RS256"}"#);
        for text in [
            "not-a-jwt".to_owned(),
            format!("{header}.{payload}"),
            format!("{header}.{payload}.sig.extra"),
            format!("{header}.{}.sig", encoded("[1]")),
            format!("{header}.{}.sig", encoded(r#"{"iss":"a","iss":"b"}"#)),
            format!("{header}.!!!.sig"),
        ] {
            assert!(Assertion::parse(&text).is_none(), "{text}");
        }
        // A header this server does not understand is kept as unreadable, and refused later.
        for unreadable in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"HS256","alg":"RS256"}"#,
            r#"{"alg":"RS256","crit":["urn:x"],"urn:x":1}"#,
            r#"{"alg":"RS256","crit":["b64"],"b64":false}"#,
            r#"{"alg":"RS256","b64":false}"#,
            r#"{"alg":"RS256","b64":"yes"}"#,
        ] {
            let text = format!("{}.{payload}.", encoded(unreadable));
            let assertion = Assertion::parse(&text).unwrap();
            assert!(assertion.header().is_none(), "{unreadable}");
            assert_eq!(assertion.signature().unwrap(), b"");
        }
        let plain = format!("{}.{payload}.", encoded(r#"{"alg":"RS256","b64":true}"#));
        assert!(Assertion::parse(&plain).unwrap().header().is_some());
    }
}
