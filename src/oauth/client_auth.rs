//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic`, `client_secret_post`, `private_key_jwt` (a signed assertion, checked
//! in [`assertion`](super::assertion)), or `none` (public clients, PKCE only). A metadata
//! document client has no secret; one that registered `private_key_jwt` alone must sign.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::assertion::JWT_BEARER;
use super::assertion::compact::Assertion;
use super::budget::{Budget, Guessed, Refused};
use super::clients::{Client, FindError};
use super::params::Params;
use super::{AuthServer, OAuthError};
use crate::rules::secret::{self, Secret};

/// Credentials as presented.
#[derive(Debug)]
struct Presented {
    client_id: String,
    secret: Option<Secret>,
    /// A `client_assertion` of the one accepted type, read but not yet verified.
    assertion: Option<Assertion>,
}

impl AuthServer {
    /// Authenticate the calling client. `authorization` is the raw `Authorization` header, if any.
    /// A secret compared spends `budget` for the client named, reserved right before the
    /// comparison and given back if it matches, and so does each assertion's signature check; a
    /// client id that names no client spends the address's budget for unknown clients. Public
    /// clients spend nothing.
    ///
    /// # Errors
    ///
    /// `invalid_client` for an unknown client, a wrong secret or a refused assertion (the HTTP
    /// layer answers 401, so that clients register again); `invalid_request` for contradictory
    /// credentials; `temporarily_unavailable` when a client's key set cannot be fetched right now;
    /// `Limited` once the budget for that client, or for unknown clients, is spent.
    pub(crate) async fn authenticate_client(
        &self,
        authorization: Option<&str>,
        params: &Params<'_>,
        budget: &Budget,
    ) -> Result<Client, Refused> {
        self.authenticate(presented(authorization, params)?, budget)
            .await
    }

    /// Authenticate a resource server at the introspection endpoint: a client the configuration
    /// names, with its secret or a signed assertion. Another client is refused before it is
    /// looked up (and spends nothing: it guesses no secret), so a URL client id does not even
    /// cost a metadata document fetch.
    ///
    /// # Errors
    ///
    /// `invalid_client` for a client not named, or one that fails authentication or has no
    /// secret; `invalid_request` for contradictory credentials; `Limited` as for
    /// [`authenticate_client`](Self::authenticate_client).
    pub(crate) async fn authenticate_resource_server(
        &self,
        authorization: Option<&str>,
        params: &Params<'_>,
        budget: &Budget,
    ) -> Result<Client, Refused> {
        let presented = presented(authorization, params)?;
        if !self
            .settings
            .introspection_clients
            .contains(&presented.client_id)
        {
            return Err(OAuthError::invalid_client(
                "this client may not introspect tokens; only configured resource servers may",
            )
            .into());
        }
        // A signed assertion proves a confidential client as well as a secret does (the
        // pre-registered client may have keys and no secret).
        let signed = presented.assertion.is_some();
        let client = self.authenticate(presented, budget).await?;
        if client.secret_hash.is_none() && !signed {
            return Err(OAuthError::invalid_client(
                "introspection is for confidential clients (resource servers) only",
            )
            .into());
        }
        Ok(client)
    }

    async fn authenticate(&self, presented: Presented, budget: &Budget) -> Result<Client, Refused> {
        // The client is looked up before any unit is taken: a request still waiting on the store
        // or on a metadata document guesses nothing, and must not hold a unit of its client's
        // budget while it waits (concurrent requests of one busy client would get 429). The unit
        // is taken right before the comparison, which awaits nothing, so concurrent guesses are
        // still held to the budget exactly, and a right guess past it is never checked.
        let client = match self.find_client(&presented.client_id).await {
            Ok(Some(client)) => client,
            Ok(None) => {
                let error = OAuthError::invalid_client("unknown client; register again");
                return Err(unknown_client(budget, error));
            }
            Err(FindError::Store(error)) => return Err(error.into()),
            Err(FindError::Document(error)) => {
                tracing::info!(target: "mcp_oauth::cimd", url = %error.url, detail = %error.detail(), "no usable metadata document at a token endpoint");
                if error.is_temporary() {
                    // Not the client's doing, and no secret was checked: 503, nothing spent.
                    return Err(error.token_error().into());
                }
                return Err(unknown_client(budget, error.token_error()));
            }
        };
        if let Some(assertion) = &presented.assertion {
            let Some(rules) = &client.assertion else {
                if client.secret_hash.is_some() {
                    budget.reserve(Guessed::client(&client.client_id))?.spend();
                }
                return Err(OAuthError::invalid_client(
                    "this client is not registered for private_key_jwt; authenticate as it registered",
                )
                .into());
            };
            self.check_assertion(&client.client_id, assertion, rules, budget)
                .await?;
            return Ok(client);
        }
        if client
            .assertion
            .as_ref()
            .is_some_and(|rules| rules.required)
        {
            // It registered private_key_jwt alone: no downgrade to `none` or a secret.
            budget.reserve(Guessed::client(&client.client_id))?.spend();
            return Err(OAuthError::invalid_client(
                "this client must authenticate with a client assertion (private_key_jwt)",
            )
            .into());
        }
        let Some(expected) = &client.secret_hash else {
            // A public client has no secret to guess. Its id is no secret either, and is shared by
            // every user of a client described by a metadata document, so a failure here must not
            // spend a budget that the others behind the same address rely on.
            return match presented.secret {
                Some(_) => Err(OAuthError::invalid_client(
                    "this client is public and has no secret",
                )
                .into()),
                None => Ok(client),
            };
        };
        let attempt = budget.reserve(Guessed::client(&presented.client_id))?;
        match &presented.secret {
            Some(secret) if secret::hash_matches(secret.expose(), expected) => {
                attempt.refund();
                Ok(client)
            }
            Some(_) => {
                attempt.spend();
                Err(OAuthError::invalid_client("client authentication failed").into())
            }
            None => {
                attempt.spend();
                Err(OAuthError::invalid_client(
                    "this client must authenticate with its client secret",
                )
                .into())
            }
        }
    }
}

/// A client id that names no client guesses no client's secret: it spends a unit of the
/// address's budget for unknown clients.
fn unknown_client(budget: &Budget, error: OAuthError) -> Refused {
    match budget.reserve(Guessed::UnknownClient) {
        Ok(unknown) => {
            unknown.spend();
            error.into()
        }
        Err(exhausted) => exhausted.into(),
    }
}

/// For the connection doctor, after a request failed: the client it claimed to be (never its
/// secret) and its `grant_type`, read best-effort from the body and the `Authorization` header.
pub(crate) fn claimed_client(
    body: &[u8],
    authorization: Option<&str>,
) -> (Option<String>, Option<String>) {
    let Ok(params) = Params::parse(body) else {
        return (None, None);
    };
    let client_id = presented(authorization, &params)
        .ok()
        .map(|p| p.client_id)
        .or_else(|| params.get("client_id").map(str::to_owned));
    (client_id, params.get("grant_type").map(str::to_owned))
}

fn presented(authorization: Option<&str>, params: &Params<'_>) -> Result<Presented, OAuthError> {
    let assertion = assertion_of(params)?;
    let basic = authorization.and_then(|value| {
        let (scheme, rest) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then(|| rest.trim())
    });
    if let Some(encoded) = basic {
        if params.get("client_secret").is_some() || assertion.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            ));
        }
        let (id, secret) = decode_basic(encoded)
            .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
        if params.get("client_id").is_some_and(|body_id| body_id != id) {
            return Err(OAuthError::invalid_request(
                "client_id in the body differs from the Authorization header",
            ));
        }
        return Ok(Presented {
            client_id: id,
            secret: Some(secret.into()),
            assertion: None,
        });
    }
    if let Some(assertion) = assertion {
        if params.get("client_secret").is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            ));
        }
        // The client is named by the assertion's `iss` (RFC 7523 §3), read here only to find
        // its keys: nothing in it is trusted before the signature is checked.
        let unreadable =
            || OAuthError::invalid_client("client assertion refused: it has no readable iss");
        let assertion = Assertion::parse(assertion).ok_or_else(unreadable)?;
        let issuer = assertion.issuer().ok_or_else(unreadable)?.to_owned();
        if params.get("client_id").is_some_and(|id| id != issuer) {
            return Err(OAuthError::invalid_request(
                "client_id differs from the client assertion's iss",
            ));
        }
        return Ok(Presented {
            client_id: issuer,
            secret: None,
            assertion: Some(assertion),
        });
    }
    let client_id = params
        .get("client_id")
        .ok_or_else(|| OAuthError::invalid_client("client authentication is required"))?;
    Ok(Presented {
        client_id: client_id.to_owned(),
        secret: params.get("client_secret").map(Secret::from),
        assertion: None,
    })
}

/// `client_assertion` with `client_assertion_type` exactly [`JWT_BEARER`] (RFC 7521 §4.2).
fn assertion_of<'p>(params: &'p Params<'_>) -> Result<Option<&'p str>, OAuthError> {
    match (
        params.get("client_assertion_type"),
        params.get("client_assertion"),
    ) {
        (None, None) => Ok(None),
        (Some(JWT_BEARER), Some(assertion)) => Ok(Some(assertion)),
        (Some(_), Some(_)) => Err(OAuthError::invalid_client(format!(
            "client assertion refused: client_assertion_type must be {JWT_BEARER}"
        ))),
        (None, Some(_)) | (Some(_), None) => Err(OAuthError::invalid_request(
            "client_assertion and client_assertion_type go together",
        )),
    }
}

/// RFC 6749 §2.3.1: base64 of `urlencode(id) ":" urlencode(secret)`.
fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let decoded = STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .ok()
            .map(|v| v.into_owned())
    };
    let id = unescape(id)?;
    if id.is_empty() {
        return None;
    }
    Some((id, unescape(secret).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    #[test]
    fn basic_is_form_decoded() {
        let header = STANDARD.encode("my%20client:p%40ss+word");
        assert_eq!(
            decode_basic(&header),
            Some(("my client".to_owned(), "p@ss word".to_owned()))
        );
        assert_eq!(decode_basic("!!!"), None);
        assert_eq!(decode_basic(&STANDARD.encode("nocolon")), None);
        assert_eq!(decode_basic(&STANDARD.encode(":secret")), None);
    }

    #[test]
    fn two_methods_are_refused() {
        let params = Params::parse(b"client_secret=x").unwrap();
        let header = format!("Basic {}", STANDARD.encode("a:b"));
        assert!(presented(Some(&header), &params).is_err());
    }

    #[test]
    fn an_assertion_beside_another_method_is_refused() {
        let assertion = format!("x.{}.y", URL_SAFE_NO_PAD.encode(r#"{"iss":"a"}"#));
        let body = format!("client_assertion_type={JWT_BEARER}&client_assertion={assertion}");
        let header = format!("Basic {}", STANDARD.encode("a:b"));
        let params = Params::parse(body.as_bytes()).unwrap();
        assert_eq!(presented(None, &params).unwrap().client_id, "a");
        assert!(presented(Some(&header), &params).is_err());
        let with_secret = format!("{body}&client_secret=s");
        assert!(presented(None, &Params::parse(with_secret.as_bytes()).unwrap()).is_err());
        let other_id = format!("{body}&client_id=b");
        assert!(presented(None, &Params::parse(other_id.as_bytes()).unwrap()).is_err());
    }

    #[test]
    fn mismatched_ids_are_refused() {
        let params = Params::parse(b"client_id=other").unwrap();
        let header = format!("Basic {}", STANDARD.encode("a:b"));
        assert!(presented(Some(&header), &params).is_err());
    }
}
