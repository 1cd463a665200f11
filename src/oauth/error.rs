//! Protocol errors, shaped like RFC 6749 §5.2 / RFC 6750 §3.1 / RFC 7591 §3.2.2.

use std::borrow::Cow;

use crate::store::StoreError;

/// The `error` code of an OAuth error response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    /// Malformed or missing parameter.
    InvalidRequest,
    /// Client authentication failed or the client is unknown.
    InvalidClient,
    /// Bad, expired, used or foreign code or refresh token.
    InvalidGrant,
    /// The client may not use this grant.
    UnauthorizedClient,
    /// Grant type not supported.
    UnsupportedGrantType,
    /// Response type not supported.
    UnsupportedResponseType,
    /// Scope problem.
    InvalidScope,
    /// RFC 8707: the resource is not this server's.
    InvalidTarget,
    /// The owner said no.
    AccessDenied,
    /// RFC 7591: a redirect URI is not acceptable.
    InvalidRedirectUri,
    /// RFC 7591: other client metadata is not acceptable.
    InvalidClientMetadata,
    /// RFC 6750: the bearer token is missing, bad, expired or foreign.
    InvalidToken,
    /// RFC 6750: the token lacks a needed scope.
    InsufficientScope,
    /// A backend is down; try again.
    TemporarilyUnavailable,
    /// An unexpected server fault.
    ServerError,
}

impl ErrorCode {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }
}

/// An OAuth error: a code and a human-readable description (ASCII, no secrets).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub(crate) struct OAuthError {
    /// The `error` value.
    pub(crate) code: ErrorCode,
    /// The `error_description` value.
    pub(crate) description: Cow<'static, str>,
}

impl OAuthError {
    /// An error with a description.
    pub(crate) fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    /// `invalid_request`.
    pub(crate) fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_client`.
    pub(crate) fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, description)
    }

    /// `invalid_grant`.
    pub(crate) fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }
}

/// A backend failure becomes `temporarily_unavailable` (503), never a 401 that would make clients
/// throw their tokens away. The cause goes to the log, not to the client.
impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        log_store_error(&error);
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            "storage is unavailable, try again shortly",
        )
    }
}

/// Log a backend failure with its source chain. Store errors never carry secrets.
pub(crate) fn log_store_error(error: &StoreError) {
    let source = std::error::Error::source(error).map(ToString::to_string);
    tracing::error!(target: "mcp_oauth::store", error = %error, source = ?source, "store operation failed");
}
