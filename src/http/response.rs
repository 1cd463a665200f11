//! Turning protocol errors into HTTP responses: RFC 6749/6750 JSON, `Cache-Control: no-store`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::oauth::{ErrorCode, OAuthError};

/// Seconds a client should wait after a 503.
pub(crate) const RETRY_AFTER_SECS: &str = "5";

/// The status for an error code at the token-style endpoints.
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::AccessDenied | ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = status_of(self.code);
        let body = json!({
            "error": self.code.as_str(),
            "error_description": self.description,
        });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        no_store(response)
    }
}

/// A JSON success response that must not be cached (tokens, credentials, one-time URLs).
pub(crate) fn json_no_store<T: Serialize>(status: StatusCode, body: &T) -> Response {
    no_store((status, Json(body)).into_response())
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (OAuth 2.1 §3.2.3).
pub(crate) fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The page for a store outage while rendering a page: 503, saying so.
pub(crate) fn unavailable_page(
    state: &super::AppState,
    error: crate::store::StoreError,
) -> Response {
    let error = OAuthError::from(error);
    crate::pages::error(&crate::pages::ErrorPage {
        app_name: &state.app_name,
        status: StatusCode::SERVICE_UNAVAILABLE,
        title: "Temporarily unavailable",
        message: &error.description,
        return_to: None,
    })
}
