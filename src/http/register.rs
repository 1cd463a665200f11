//! `POST /register` (RFC 7591).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::body::RawJson;
use super::response::json_no_store;

pub(crate) async fn register(State(state): State<AppState>, RawJson(body): RawJson) -> Response {
    match state.server.register(&body).await {
        Ok(registration) => json_no_store(StatusCode::CREATED, &registration),
        Err(error) => error.into_response(),
    }
}
