//! `POST /register` (RFC 7591).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::body::RawJson;
use super::response::json_no_store;
use super::{AppState, doctor};
use crate::audit::StepKind;
use crate::oauth::RegisterError;

pub(crate) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawJson(body): RawJson,
) -> Response {
    match state.server.register(&body).await {
        Ok(registration) => json_no_store(StatusCode::CREATED, &registration),
        Err(error) => {
            let oauth_error = error.oauth_error();
            doctor::note(
                &state,
                None,
                &headers,
                StepKind::Registration,
                Some(&oauth_error),
            );
            let mut response = oauth_error.into_response();
            // 503, not 429: this client sent one request; the server's shared room for
            // unapproved registrations is what ran out.
            if matches!(error, RegisterError::Full) {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(RegisterError::RETRY_AFTER_SECS),
                );
            }
            response
        }
    }
}
