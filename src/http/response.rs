//! Turning protocol errors into HTTP responses: RFC 6749/6750 JSON, `Cache-Control: no-store`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::oauth::{ErrorCode, OAuthError, Refusal};

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

/// The bearer guard's refusal: the JSON error with its status (400, 401, 403 or 503) and the
/// challenge, rendered once from the value.
impl IntoResponse for Refusal<'_> {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        if let Some(challenge) = self.challenge {
            // Always valid: a challenge writes only the characters RFC 6750 allows.
            let value = HeaderValue::try_from(challenge.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// A response that must not be cached (tokens, credentials, one-time URLs): whatever `T` answers,
/// with `Cache-Control: no-store` and `Pragma: no-cache`.
pub(crate) struct NoStore<T>(pub(crate) T);

impl<T: IntoResponse> IntoResponse for NoStore<T> {
    fn into_response(self) -> Response {
        no_store(self.0.into_response())
    }
}

/// A JSON success response that must not be cached (tokens, credentials, one-time URLs).
pub(crate) fn json_no_store<T: Serialize>(status: StatusCode, body: &T) -> Response {
    (status, NoStore(Json(body))).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::{BearerError, BearerRules};

    #[test]
    fn refusals_render_with_the_status_rfc_6750_gives_their_code_and_one_challenge() {
        let scopes = vec!["mcp".to_owned(), "admin".to_owned()];
        let rules = BearerRules {
            resource_metadata: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
            scopes: &scopes,
            default_scopes: &scopes[..1],
        };
        let held = ["mcp".to_owned()];
        let cases = [
            (rules.refuse(BearerError::Missing), StatusCode::UNAUTHORIZED),
            (
                rules.refuse(BearerError::Malformed("send one Authorization header")),
                StatusCode::BAD_REQUEST,
            ),
            (rules.refuse(BearerError::Invalid), StatusCode::UNAUTHORIZED),
            (
                rules.check_scopes(&scopes[1..], &held, None).unwrap_err(),
                StatusCode::FORBIDDEN,
            ),
        ];
        for (refusal, status) in cases {
            let challenge = refusal.challenge.as_ref().unwrap().to_string();
            let response = refusal.into_response();
            assert_eq!(response.status(), status, "{challenge}");
            let written: Vec<_> = response
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .collect();
            assert_eq!(written, [challenge.as_str()]);
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        }
        let outage = rules.refuse(BearerError::Unavailable).into_response();
        assert_eq!(outage.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!outage.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
