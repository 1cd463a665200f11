//! The public keys of a dynamically registered `private_key_jwt` client: checked at registration
//! by the rules a metadata document's keys meet, kept in its [`ClientRecord`](crate::store::ClientRecord),
//! and read back as [`AssertionRules`] whenever the client authenticates.

use std::sync::Arc;

use super::AuthServer;
use super::assertion::keys::{self, AssertionRules, KeySource};
use super::assertion::public_keys::PublicKeys;
use super::client_format::{DocumentMembers, Sent};
use crate::rules::limits::MAX_JWKS_BYTES;
use crate::store::{AssertionKeys, ClientKeys};

impl AuthServer {
    /// The keys a registration asking for `private_key_jwt` names: exactly one of `jwks` (public
    /// signing keys only, at least one usable, at most [`keys::MAX_KEYS`] and [`MAX_JWKS_BYTES`]
    /// as kept) and `jwks_uri` (held to the URL rules of a metadata document, and accepted only
    /// where this server fetches those), and an allowed `token_endpoint_auth_signing_alg`.
    ///
    /// # Errors
    ///
    /// A plain-words reason that starts with the member at fault.
    pub(crate) fn registered_keys(
        &self,
        members: &DocumentMembers,
    ) -> Result<AssertionKeys, String> {
        let sent_alg = &members.token_endpoint_auth_signing_alg;
        // Kept by its name, which is also what the registration response echoes.
        let signing_alg = match (keys::registered_algorithm(sent_alg)?, sent_alg) {
            (Some(_), Sent::Given(name)) => Some(name.clone()),
            _ => None,
        };
        let keys = match (&members.jwks, &members.jwks_uri) {
            (Some(_), Sent::Given(_) | Sent::WrongType) => {
                return Err("private_key_jwt takes one of jwks and jwks_uri, not both".into());
            }
            (None, Sent::Absent) => {
                return Err(
                    "private_key_jwt needs the client's public keys: jwks or jwks_uri".into(),
                );
            }
            (None, Sent::WrongType) => return Err("jwks_uri must be a string".into()),
            (Some(jwks), Sent::Absent) => ClientKeys::Jwks(inline_keys(jwks)?),
            (None, Sent::Given(uri)) => ClientKeys::JwksUri(self.registrable_jwks_uri(uri)?),
        };
        Ok(AssertionKeys { keys, signing_alg })
    }

    /// A `jwks_uri` as it may be registered: only where this server fetches metadata documents,
    /// with that fetcher and its rules (https, an allowed port, not a private address or this
    /// server; loopback http only under the testing switch). Where a host name points is checked
    /// again at every fetch.
    fn registrable_jwks_uri(&self, uri: &str) -> Result<String, String> {
        let fetcher = self
            .key_sets
            .as_ref()
            .filter(|_| self.settings.client_id_metadata_documents);
        let Some(fetcher) = fetcher else {
            return Err(
                "jwks_uri is not accepted here: this server does not fetch client key \
                        sets (client metadata documents are off); register the keys inline in jwks"
                    .into(),
            );
        };
        fetcher
            .check_uri(uri)
            .map_err(|reason| format!("jwks_uri is not acceptable: {reason}"))?;
        Ok(uri.to_owned())
    }
}

/// A JWK set registered inline, as kept: its usable public signing keys only.
fn inline_keys(jwks: &serde_json::Value) -> Result<serde_json::Value, String> {
    let set = keys::public_key_set(jwks).map_err(|reason| format!("jwks is refused: {reason}"))?;
    if set.is_empty() {
        return Err(
            "jwks holds no usable public signing key (RSA, EC P-256 or Ed25519, use sig)".into(),
        );
    }
    let kept =
        serde_json::to_value(set.to_jwk_set()).map_err(|e| format!("jwks is refused: {e}"))?;
    if kept.to_string().len() > MAX_JWKS_BYTES {
        return Err(format!(
            "jwks is larger than {MAX_JWKS_BYTES} bytes (its usable keys, as kept)"
        ));
    }
    Ok(kept)
}

/// How a registered client's assertions are checked: only with the keys it registered (no
/// downgrade to `none` or a secret). Keys or an algorithm that no longer pass the rules (a record
/// changed behind the server's back, or rules since tightened) verify nothing; so does a
/// `jwks_uri` where this server does not fetch registered key sets (`fetches_key_sets` false:
/// metadata documents are off, whatever a configured client's own key URL needs).
pub(crate) fn assertion_rules(
    registered: Option<&AssertionKeys>,
    fetches_key_sets: bool,
) -> AssertionRules {
    let algorithm = registered
        .and_then(|r| r.signing_alg.as_deref())
        .map(keys::allowed_algorithm);
    let keys = match (registered.map(|r| &r.keys), algorithm) {
        (None, _) => verifies_nothing("it has no keys"),
        (_, Some(None)) => verifies_nothing("its token_endpoint_auth_signing_alg is not allowed"),
        (Some(ClientKeys::Jwks(jwks)), _) => match keys::public_key_set(jwks) {
            Ok(set) => KeySource::Inline(Arc::new(set)),
            Err(reason) => verifies_nothing(&reason),
        },
        (Some(ClientKeys::JwksUri(_)), _) if !fetches_key_sets => {
            verifies_nothing("its jwks_uri is not fetched here: metadata documents are off")
        }
        (Some(ClientKeys::JwksUri(uri)), _) => KeySource::Uri(uri.clone()),
    };
    AssertionRules {
        keys,
        algorithm: algorithm.flatten(),
        required: true,
    }
}

fn verifies_nothing(reason: &str) -> KeySource {
    tracing::error!(
        reason,
        "a registered client's keys no longer pass the rules; its assertions are refused"
    );
    KeySource::Inline(Arc::new(PublicKeys::default()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    fn holds_no_key(rules: &AssertionRules) -> bool {
        matches!(&rules.keys, KeySource::Inline(set) if set.is_empty())
    }

    #[test]
    fn registered_keys_become_required_assertion_rules() {
        let inline = AssertionKeys {
            keys: ClientKeys::Jwks(
                json!({ "keys": [{ "kty": "RSA", "kid": "a", "n": N, "e": "AQAB" }] }),
            ),
            signing_alg: Some("RS256".into()),
        };
        let rules = assertion_rules(Some(&inline), true);
        assert!(rules.required);
        assert_eq!(rules.algorithm, Some(jsonwebtoken::Algorithm::RS256));
        assert!(matches!(&rules.keys, KeySource::Inline(set) if set.find("a").is_some()));
        let at_url = AssertionKeys {
            keys: ClientKeys::JwksUri("https://client.example/jwks.json".into()),
            signing_alg: None,
        };
        let rules = assertion_rules(Some(&at_url), true);
        assert!(
            holds_no_key(&assertion_rules(Some(&at_url), false)),
            "a key URL where registered key sets are not fetched verifies nothing"
        );
        assert!(rules.required && rules.algorithm.is_none());
        assert!(matches!(&rules.keys, KeySource::Uri(uri) if uri.ends_with("jwks.json")));
    }

    /// A record changed behind the server's back (or kept from looser rules) lets nobody in: it
    /// still requires an assertion, and no assertion verifies.
    #[test]
    fn keys_that_no_longer_pass_the_rules_verify_nothing() {
        let with = |keys: ClientKeys, signing_alg: Option<&str>| AssertionKeys {
            keys,
            signing_alg: signing_alg.map(str::to_owned),
        };
        let at_url = || ClientKeys::JwksUri("https://client.example/jwks.json".into());
        for registered in [
            None,
            Some(with(
                ClientKeys::Jwks(json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0" }] })),
                None,
            )),
            Some(with(
                ClientKeys::Jwks(
                    json!({ "keys": [{ "kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "c" }] }),
                ),
                None,
            )),
            Some(with(ClientKeys::Jwks(json!("not a set")), None)),
            Some(with(at_url(), Some("HS256"))),
            Some(with(at_url(), Some("none"))),
        ] {
            let rules = assertion_rules(registered.as_ref(), true);
            assert!(rules.required, "{registered:?}");
            assert!(holds_no_key(&rules), "{registered:?}");
        }
    }
}
