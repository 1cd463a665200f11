//! Request bodies: size-limited, content-type-checked, with OAuth-shaped errors instead of axum's
//! plain-text rejections.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::AppState;
use crate::oauth::{ErrorCode, OAuthError};

/// An `application/x-www-form-urlencoded` body, read up to the configured limit, with the
/// request's headers (moved out of the request: the token endpoint reads a few of them, and a
/// separate `HeaderMap` extractor would copy them all).
#[derive(Debug)]
pub(crate) struct FormBody {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// A JSON body of type `T`, read up to the configured limit.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl FromRequest<AppState> for FormBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !has_content_type(req.headers(), "application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            )
            .into_response());
        }
        let (parts, body) = req.into_parts();
        let body = read(body, state).await?;
        Ok(FormBody {
            headers: parts.headers,
            body,
        })
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !has_content_type(req.headers(), "application/json") {
            return Err(
                OAuthError::invalid_request("the body must be application/json").into_response(),
            );
        }
        let bytes = read(req.into_body(), state).await?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            OAuthError::invalid_request(format!(
                "the JSON body is malformed or incomplete (line {}, column {})",
                e.line(),
                e.column()
            ))
            .into_response()
        })
    }
}

/// Read the raw JSON body (for endpoints that parse it themselves, like registration).
#[derive(Debug)]
pub(crate) struct RawJson(pub(crate) Bytes);

impl FromRequest<AppState> for RawJson {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !has_content_type(req.headers(), "application/json") {
            return Err(OAuthError::new(
                ErrorCode::InvalidClientMetadata,
                "the body must be application/json",
            )
            .into_response());
        }
        read(req.into_body(), state).await.map(RawJson)
    }
}

async fn read(body: Body, state: &AppState) -> Result<Bytes, Response> {
    let limit = state.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        let mut response =
            OAuthError::invalid_request(format!("the body is larger than {limit} bytes"))
                .into_response();
        *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        response
    })
}

/// Whether the Content-Type's media type is `expected` (parameters such as charset allowed).
fn has_content_type(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(expected))
}
