//! Discovery: RFC 8414 and RFC 9728 documents, prepared at start.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;

use super::{AppState, doctor};
use crate::audit::StepKind;

pub(crate) async fn authorization_server(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> impl IntoResponse {
    doctor::note(&state, None, &headers, StepKind::ServerMetadata, None);
    json_document(state.authorization_server_metadata.clone())
}

pub(crate) async fn protected_resource(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> impl IntoResponse {
    doctor::note(&state, None, &headers, StepKind::ResourceMetadata, None);
    json_document(state.protected_resource_metadata.clone())
}

/// A public document: the same for everyone, and fine to cache for an hour.
fn json_document(body: Bytes) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
}
