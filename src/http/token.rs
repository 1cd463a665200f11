//! `POST /token` and `POST /revoke`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::body::FormBody;
use super::failures::limited;
use super::response::json_no_store;
use super::{AppState, doctor};
use crate::oauth::budget::{Budget, Refused};
use crate::oauth::{ErrorCode, OAuthError};

pub(crate) async fn token(
    State(state): State<AppState>,
    budget: Budget,
    FormBody { headers, body }: FormBody,
) -> Response {
    let authorization = authorization(&headers);
    match state.server.token(&body, authorization, &budget).await {
        Ok(tokens) => json_no_store(StatusCode::OK, &tokens),
        Err(Refused::Error(error)) => {
            doctor::note_token_failure(&state, &body, authorization, &headers, &error);
            client_error(error, authorization)
        }
        Err(Refused::Limited(exhausted)) => limited(exhausted),
    }
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    budget: Budget,
    FormBody { headers, body }: FormBody,
) -> Response {
    let authorization = authorization(&headers);
    match state.server.revoke(&body, authorization, &budget).await {
        Ok(()) => super::response::no_store(StatusCode::OK.into_response()),
        Err(refused) => refusal(refused, authorization),
    }
}

pub(crate) async fn introspect(
    State(state): State<AppState>,
    budget: Budget,
    FormBody { headers, body }: FormBody,
) -> Response {
    let authorization = authorization(&headers);
    match state.server.introspect(&body, authorization, &budget).await {
        Ok(introspection) => json_no_store(StatusCode::OK, &introspection),
        Err(refused) => refusal(refused, authorization),
    }
}

fn refusal(refused: Refused, authorization: Option<&str>) -> Response {
    match refused {
        Refused::Error(error) => client_error(error, authorization),
        Refused::Limited(exhausted) => limited(exhausted),
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// RFC 6749 §5.2: a client that authenticated with the `Authorization` header gets a 401 with a
/// matching `WWW-Authenticate` challenge.
fn client_error(error: OAuthError, authorization: Option<&str>) -> Response {
    let used_basic = authorization.is_some_and(|a| {
        a.trim_start()
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("basic "))
    });
    let is_client_error = error.code == ErrorCode::InvalidClient;
    let mut response = error.into_response();
    if is_client_error && used_basic {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"token\""),
        );
    }
    response
}
