//! The page endpoints answer only the server's own pages: cross-site requests are refused before
//! they reach a handler (CSRF defence in depth; the passkey assertion is origin-bound as well).

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::oauth::{ErrorCode, OAuthError};

pub(crate) async fn require(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let origin_ok = headers
        .get(header::ORIGIN)
        .is_none_or(|origin| origin.as_bytes() == state.origin.as_bytes());
    let fetch_site_ok = headers
        .get("sec-fetch-site")
        .is_none_or(|site| matches!(site.as_bytes(), b"same-origin" | b"none"));
    if origin_ok && fetch_site_ok {
        next.run(request).await
    } else {
        OAuthError::new(
            ErrorCode::AccessDenied,
            "cross-site requests are not accepted here",
        )
        .into_response()
    }
}
