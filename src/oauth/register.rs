//! RFC 7591 dynamic client registration.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::audit::AuditEvent;

use super::limits::{
    MAX_CLIENT_NAME_CHARS, MAX_REDIRECT_URIS, MAX_REDIRECT_URIS_TOTAL_BYTES, MAX_SCOPE_BYTES,
    MAX_URI_BYTES, check_bytes, check_chars,
};
use super::secret::{self, Secret};
use super::{AuthServer, ErrorCode, OAuthError, redirect};
use crate::store::{ClientRecord, StoreError, TokenEndpointAuthMethod, TokenHash, UnixTime};

const GRANT_TYPES: [&str; 2] = ["authorization_code", "refresh_token"];

/// The registration response (RFC 7591 §3.2.1): the client's id, its secret when it has one, and
/// everything registered.
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
        })
    }

    /// The record a registration request asks for, not yet approved, and its secret.
    fn new_client(&self, body: &[u8]) -> Result<NewClient, OAuthError> {
        if !self.settings.dynamic_registration {
            return Err(OAuthError::invalid_request(
                "dynamic client registration is disabled",
            ));
        }
        let metadata: Map<String, Value> = match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(metadata_error("the body must be a JSON object")),
            Err(e) => {
                return Err(metadata_error(format!(
                    "the body is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                )));
            }
        };
        let redirect_uris = self.redirect_uris(&metadata)?;
        let auth_method = match optional_str(&metadata, "token_endpoint_auth_method")? {
            // RFC 7591 §2: the default is client_secret_basic.
            None => TokenEndpointAuthMethod::ClientSecretBasic,
            Some(name) => TokenEndpointAuthMethod::parse(name).ok_or_else(|| {
                metadata_error("token_endpoint_auth_method must be none, client_secret_post or client_secret_basic")
            })?,
        };
        let grant_types = grant_types(&metadata)?;
        response_types(&metadata)?;
        let application_type = match optional_str(&metadata, "application_type")? {
            None => None,
            Some(t @ ("native" | "web")) => Some(t.to_owned()),
            Some(_) => return Err(metadata_error("application_type must be native or web")),
        };
        let client_name = client_name(&metadata)?;
        let client_uri = bounded_str(&metadata, "client_uri", MAX_URI_BYTES)?
            .filter(|uri| uri.starts_with("https://") || uri.starts_with("http://"))
            .map(str::to_owned);
        let scope = bounded_str(&metadata, "scope", MAX_SCOPE_BYTES)?.map(str::to_owned);

        let now = self.now();
        // What approval will give: the response has no field for the short wait before it.
        let approved_expires_at = self
            .settings
            .client_lifetime_secs
            .map(|secs| now.plus(secs));
        let client_secret = auth_method
            .is_confidential()
            .then(|| secret::generate(secret::prefix::CLIENT_SECRET));
        let record = ClientRecord {
            client_id: secret::identifier(secret::prefix::CLIENT_ID),
            secret_hash: client_secret.as_deref().map(TokenHash::of),
            auth_method,
            redirect_uris,
            grant_types,
            client_name,
            client_uri,
            scope,
            application_type,
            issued_at: now,
            expires_at: Some(now.plus(self.settings.unapproved_client_lifetime_secs)),
            approved_at: None,
        };
        Ok(NewClient {
            record,
            client_secret: client_secret.map(Secret::from),
            approved_expires_at,
        })
    }

    fn redirect_uris(&self, metadata: &Map<String, Value>) -> Result<Vec<String>, OAuthError> {
        let invalid = |d: String| OAuthError::new(ErrorCode::InvalidRedirectUri, d);
        let Some(Value::Array(values)) = metadata.get("redirect_uris") else {
            return Err(invalid(
                "redirect_uris must be a non-empty array of URIs".into(),
            ));
        };
        if values.is_empty() || values.len() > MAX_REDIRECT_URIS {
            return Err(invalid(format!(
                "redirect_uris must list between 1 and {MAX_REDIRECT_URIS} URIs"
            )));
        }
        let mut uris = Vec::with_capacity(values.len());
        let mut total = 0;
        for value in values {
            let Value::String(uri) = value else {
                return Err(invalid("redirect_uris must contain strings".into()));
            };
            redirect::validate_registrable(uri, &self.settings.native_redirect_uris).map_err(
                |reason| invalid(format!("{reason}: {}", super::params::printable(uri))),
            )?;
            if !uris.contains(uri) {
                total += uri.len();
                uris.push(uri.clone());
            }
        }
        if total > MAX_REDIRECT_URIS_TOTAL_BYTES {
            return Err(invalid(format!(
                "redirect_uris are longer than {MAX_REDIRECT_URIS_TOTAL_BYTES} bytes in all"
            )));
        }
        Ok(uris)
    }
}

fn metadata_error(description: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

fn optional_str<'a>(
    metadata: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, OAuthError> {
    match metadata.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(metadata_error(format!("{field} must be a string"))),
    }
}

/// A string kept for the client's lifetime: refused past `max` bytes.
fn bounded_str<'a>(
    metadata: &'a Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<&'a str>, OAuthError> {
    let value = optional_str(metadata, field)?;
    if let Some(value) = value {
        check_bytes(field, value, max).map_err(metadata_error)?;
    }
    Ok(value)
}

/// The display name: refused past its length, control characters dropped, trimmed.
fn client_name(metadata: &Map<String, Value>) -> Result<Option<String>, OAuthError> {
    let Some(name) = optional_str(metadata, "client_name")? else {
        return Ok(None);
    };
    check_chars("client_name", name, MAX_CLIENT_NAME_CHARS).map_err(metadata_error)?;
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let name = name.trim();
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

fn string_list<'a>(
    metadata: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<Vec<&'a str>>, OAuthError> {
    match metadata.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| metadata_error(format!("{field} must contain strings")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(metadata_error(format!(
            "{field} must be an array of strings"
        ))),
    }
}

/// Supported grant types among those asked for; others (say `client_credentials`) are dropped and
/// the response shows what was registered, as RFC 7591 §2 allows.
fn grant_types(metadata: &Map<String, Value>) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = string_list(metadata, "grant_types")? else {
        return Ok(vec!["authorization_code".to_owned()]);
    };
    let granted: Vec<String> = GRANT_TYPES
        .iter()
        .filter(|g| requested.contains(g))
        .map(|g| (*g).to_owned())
        .collect();
    if !granted.iter().any(|g| g == "authorization_code") {
        return Err(metadata_error(
            "grant_types must include authorization_code",
        ));
    }
    Ok(granted)
}

fn response_types(metadata: &Map<String, Value>) -> Result<(), OAuthError> {
    match string_list(metadata, "response_types")? {
        None => Ok(()),
        Some(types) if types.iter().all(|t| *t == "code") && !types.is_empty() => Ok(()),
        Some(_) => Err(metadata_error("response_types may contain only code")),
    }
}
