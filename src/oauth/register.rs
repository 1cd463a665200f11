//! RFC 7591 dynamic client registration.

use serde::Serialize;
use serde_json::Value;

use crate::audit::AuditEvent;

use super::client_format::{ClientMetadata, MetadataError};
use super::{AuthServer, ErrorCode, OAuthError};
use crate::rules::secret::{self, Secret};
use crate::store::{
    AssertionKeys, ClientKeys, ClientRecord, StoreError, TokenEndpointAuthMethod, TokenHash,
    UnixTime,
};

/// The registration response (RFC 7591 §3.2.1): the client's id, its secret when it has one, and
/// everything registered (for `private_key_jwt`, the keys as kept and the algorithm).
#[derive(Debug, Serialize)]
pub(crate) struct Registration {
    client_id: String,
    client_id_issued_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret_expires_at: Option<u64>,
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: &'static str,
    grant_types: Vec<String>,
    response_types: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    client_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_endpoint_auth_signing_alg: Option<String>,
}

/// A registration about to be stored.
struct NewClient {
    record: ClientRecord,
    /// The raw secret, shown once in the response; the record keeps its hash.
    client_secret: Option<Secret>,
    /// When the registration will lapse once approved; `None` for never.
    approved_expires_at: Option<UnixTime>,
}

/// Why a registration was not made.
#[derive(Debug)]
pub(crate) enum RegisterError {
    /// The request is refused (RFC 7591 §3.2.2), or a store failed.
    Refused(OAuthError),
    /// As many registrations as allowed await the owner's approval: try again later. Nothing was
    /// evicted to make room.
    Full,
}

impl RegisterError {
    /// How long a client is told to wait when registrations are full: a place frees up whenever
    /// a waiting registration is approved, lapses or is removed by the owner.
    pub(crate) const RETRY_AFTER_SECS: u64 = 60;

    /// The error as an OAuth error response body. RFC 7591 has no code for "try again later";
    /// `temporarily_unavailable` is the OAuth vocabulary's (RFC 6749 §4.1.2.1).
    pub(crate) fn oauth_error(&self) -> OAuthError {
        match self {
            Self::Refused(error) => error.clone(),
            Self::Full => OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "too many registered clients are awaiting the owner's approval; try again later",
            ),
        }
    }
}

impl From<OAuthError> for RegisterError {
    fn from(error: OAuthError) -> Self {
        Self::Refused(error)
    }
}

impl From<StoreError> for RegisterError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::CapacityReached { .. } => Self::Full,
            other => Self::Refused(other.into()),
        }
    }
}

impl AuthServer {
    /// Register a client from its JSON metadata. The registration lives
    /// `unapproved_client_lifetime_secs` and counts toward `max_unapproved_clients` until the owner
    /// first approves the client ([`AuthServer::approve`]).
    ///
    /// # Errors
    ///
    /// `invalid_redirect_uri` or `invalid_client_metadata` naming the problem; `invalid_request`
    /// when registration is switched off; [`RegisterError::Full`] when the cap is reached.
    pub(crate) async fn register(&self, body: &[u8]) -> Result<Registration, RegisterError> {
        let NewClient {
            record,
            client_secret,
            approved_expires_at,
        } = self.new_client(body)?;
        self.clients
            .insert(record.clone(), self.settings.max_unapproved_clients)
            .await?;
        self.audit.emit(AuditEvent::ClientRegistered {
            client_id: record.client_id.clone(),
            auth_method: record.auth_method.as_str(),
        });
        let (jwks, jwks_uri, token_endpoint_auth_signing_alg) = key_members(record.assertion_keys);
        Ok(Registration {
            client_id: record.client_id,
            client_id_issued_at: record.issued_at.0,
            client_secret_expires_at: client_secret
                .as_ref()
                .map(|_| approved_expires_at.map_or(0, |t| t.0)),
            client_secret,
            redirect_uris: record.redirect_uris,
            token_endpoint_auth_method: record.auth_method.as_str(),
            grant_types: record.grant_types,
            response_types: ["code"],
            client_name: record.client_name,
            client_uri: record.client_uri,
            scope: record.scope,
            application_type: record.application_type,
            jwks,
            jwks_uri,
            token_endpoint_auth_signing_alg,
        })
    }

    /// The record a registration request asks for, not yet approved, and its secret.
    fn new_client(&self, body: &[u8]) -> Result<NewClient, OAuthError> {
        if !self.settings.dynamic_registration {
            return Err(OAuthError::invalid_request(
                "dynamic client registration is disabled",
            ));
        }
        let (metadata, auth_method) = requested(body, &self.settings.native_redirect_uris)?;
        let now = self.now();
        // What approval will give: the response has no field for the short wait before it.
        let approved_expires_at = self
            .settings
            .client_lifetime_secs
            .map(|secs| now.plus(secs));
        // A client signing with its own keys gets no secret: it would never use one.
        let assertion_keys = match auth_method {
            TokenEndpointAuthMethod::PrivateKeyJwt => Some(
                self.registered_keys(&metadata.document)
                    .map_err(metadata_error)?,
            ),
            _ => None,
        };
        let client_secret = auth_method
            .has_secret()
            .then(|| secret::generate(secret::prefix::CLIENT_SECRET));
        let record = ClientRecord {
            client_id: secret::identifier(secret::prefix::CLIENT_ID),
            secret_hash: client_secret.as_deref().map(TokenHash::of),
            auth_method,
            redirect_uris: metadata.redirect_uris,
            grant_types: metadata.grant_types,
            client_name: metadata.client_name,
            client_uri: metadata.client_uri,
            scope: metadata.scope,
            application_type: metadata.application_type,
            issued_at: now,
            expires_at: Some(now.plus(self.settings.unapproved_client_lifetime_secs)),
            approved_at: None,
            assertion_keys,
        };
        Ok(NewClient {
            record,
            client_secret: client_secret.map(Secret::from),
            approved_expires_at,
        })
    }
}

/// The metadata a registration request asks for, by the rules every client description meets,
/// and the one rule of registration's own: the client names its authentication method, and one
/// it does not name is `client_secret_basic` (RFC 7591 §2).
fn requested(
    body: &[u8],
    native_redirect_uris: &[String],
) -> Result<(ClientMetadata, TokenEndpointAuthMethod), OAuthError> {
    let metadata = ClientMetadata::parse(body, native_redirect_uris).map_err(refusal)?;
    let auth_method = match metadata.token_endpoint_auth_method.as_deref() {
        None => TokenEndpointAuthMethod::ClientSecretBasic,
        Some(name) => TokenEndpointAuthMethod::parse(name).ok_or_else(|| {
            metadata_error(
                "token_endpoint_auth_method must be none, client_secret_post, client_secret_basic or private_key_jwt",
            )
        })?,
    };
    Ok((metadata, auth_method))
}

/// The members that name a signing client's keys in the response (RFC 7591 §2): `jwks` or
/// `jwks_uri`, and `token_endpoint_auth_signing_alg`.
fn key_members(keys: Option<AssertionKeys>) -> (Option<Value>, Option<String>, Option<String>) {
    let Some(AssertionKeys { keys, signing_alg }) = keys else {
        return (None, None, None);
    };
    match keys {
        ClientKeys::Jwks(jwks) => (Some(jwks), None, signing_alg),
        ClientKeys::JwksUri(uri) => (None, Some(uri), signing_alg),
    }
}

/// A refusal in RFC 7591 §3.2.2 terms, the body named as what a registration sent.
fn refusal(error: MetadataError) -> OAuthError {
    match error {
        MetadataError::NotJson { line, column } => metadata_error(format!(
            "the body is not valid JSON (line {line}, column {column})"
        )),
        MetadataError::NotAnObject => metadata_error("the body must be a JSON object"),
        MetadataError::RedirectUris(description) => {
            OAuthError::new(ErrorCode::InvalidRedirectUri, description)
        }
        MetadataError::Member(description) => metadata_error(description),
    }
}

fn metadata_error(description: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn code_of(body: &[u8]) -> ErrorCode {
        requested(body, &[]).unwrap_err().code
    }

    fn json_code(metadata: &Value) -> ErrorCode {
        code_of(metadata.to_string().as_bytes())
    }

    #[test]
    fn bad_redirect_uris_are_invalid_redirect_uri_and_everything_else_invalid_client_metadata() {
        for metadata in [
            json!({}),
            json!({ "redirect_uris": null }),
            json!({ "redirect_uris": "https://client.example/cb" }),
            json!({ "redirect_uris": [42] }),
            json!({ "redirect_uris": [] }),
            json!({ "redirect_uris": ["http://client.example/cb"] }),
        ] {
            assert_eq!(
                json_code(&metadata),
                ErrorCode::InvalidRedirectUri,
                "{metadata}"
            );
        }
        let cb = json!(["https://client.example/cb"]);
        for metadata in [
            json!({ "redirect_uris": cb, "token_endpoint_auth_method": 3 }),
            json!({ "redirect_uris": cb, "token_endpoint_auth_method": "client_secret_jwt" }),
            json!({ "redirect_uris": cb, "grant_types": { "0": "authorization_code" } }),
            json!({ "redirect_uris": cb, "client_name": 7 }),
            json!({ "redirect_uris": cb, "scope": ["mcp"] }),
            json!([{ "redirect_uris": cb }]),
        ] {
            assert_eq!(
                json_code(&metadata),
                ErrorCode::InvalidClientMetadata,
                "{metadata}"
            );
        }
        for body in [&b""[..], b"{", b"\xff", b"null"] {
            assert_eq!(code_of(body), ErrorCode::InvalidClientMetadata, "{body:?}");
        }
        let description = requested(b"{", &[]).unwrap_err().description;
        assert_eq!(description, "the body is not valid JSON (line 1, column 1)");
    }

    #[test]
    fn registration_names_its_method_or_gets_client_secret_basic() {
        let method = |metadata: Value| requested(metadata.to_string().as_bytes(), &[]).unwrap().1;
        let cb = json!(["https://client.example/cb"]);
        assert_eq!(
            method(json!({ "redirect_uris": cb })),
            TokenEndpointAuthMethod::ClientSecretBasic
        );
        assert_eq!(
            method(json!({ "redirect_uris": cb, "token_endpoint_auth_method": "none" })),
            TokenEndpointAuthMethod::None
        );
        // Its keys are judged next, by `registered_keys`.
        assert_eq!(
            method(json!({ "redirect_uris": cb, "token_endpoint_auth_method": "private_key_jwt" })),
            TokenEndpointAuthMethod::PrivateKeyJwt
        );
        // A document's members mean nothing here (RFC 7591 §2: ignore what is not used).
        assert_eq!(
            method(json!({
                "redirect_uris": cb, "token_endpoint_auth_method": "client_secret_post",
                "client_id": 7, "client_secret": "chosen", "jwks": { "keys": [{ "d": "x" }] },
            })),
            TokenEndpointAuthMethod::ClientSecretPost
        );
    }
}
