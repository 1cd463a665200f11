//! `POST /register` (RFC 7591).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::body::RawJson;
use super::response::json_no_store;
use super::{AppState, doctor};
use crate::console::StepKind;

pub(crate) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawJson(body): RawJson,
) -> Response {
    match state.server.register(&body).await {
        Ok(registration) => json_no_store(StatusCode::CREATED, &registration),
        Err(error) => {
            doctor::note(&state, None, &headers, StepKind::Registration, Some(&error));
            error.into_response()
        }
    }
}
