//! The [`TokenInfo`] extractor.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::oauth::TokenInfo;

/// Reads who is calling, as the bearer guard found it.
///
/// ```
/// use mcp_oauth::TokenInfo;
///
/// async fn whoami(caller: TokenInfo) -> String {
///     format!("{} with scopes {:?}", caller.client_id, caller.scopes)
/// }
/// ```
impl<S: Send + Sync> FromRequestParts<S> for TokenInfo {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<TokenInfo>().cloned().ok_or_else(|| {
            tracing::error!(target: "mcp_oauth", "TokenInfo extracted on a route without the bearer guard");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "this route is not behind the mcp-oauth bearer guard",
            )
                .into_response()
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for TokenInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<TokenInfo>().cloned())
    }
}
