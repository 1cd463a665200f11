//! `POST /register` (RFC 7591).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::body::RawJson;
use super::response::NoStore;
use super::{AppState, doctor};
use crate::audit::StepKind;
use crate::oauth::RegisterError;

pub(crate) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawJson(body): RawJson,
) -> Result<impl IntoResponse, RegisterError> {
    let registration = state.server.register(&body).await.inspect_err(|error| {
        let error = error.oauth_error();
        doctor::note(&state, None, &headers, StepKind::Registration, Some(&error));
    })?;
    Ok((StatusCode::CREATED, NoStore(Json(registration))))
}

impl IntoResponse for RegisterError {
    fn into_response(self) -> Response {
        let mut response = self.oauth_error().into_response();
        // 503, not 429: this client sent one request; the server's shared room for unapproved
        // registrations is what ran out.
        if matches!(self, Self::Full) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(Self::RETRY_AFTER_SECS),
            );
        }
        response
    }
}
