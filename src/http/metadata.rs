//! Discovery: RFC 8414 and RFC 9728 documents, prepared at start.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, doctor};
use crate::audit::StepKind;

pub(crate) async fn authorization_server(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    doctor::note(&state, None, &headers, StepKind::ServerMetadata, None);
    json_document(state.authorization_server_metadata.clone())
}

pub(crate) async fn protected_resource(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    doctor::note(&state, None, &headers, StepKind::ResourceMetadata, None);
    json_document(state.protected_resource_metadata.clone())
}

fn json_document(body: axum::body::Bytes) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}
