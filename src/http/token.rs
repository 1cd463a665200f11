//! `POST /token`, `POST /revoke` and `POST /introspect`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::body::FormBody;
use super::response::NoStore;
use super::{AppState, doctor};
use crate::oauth::budget::{Budget, Refused};
use crate::oauth::{ErrorCode, OAuthError};

pub(crate) async fn token(
    State(state): State<AppState>,
    budget: Budget,
    FormBody { headers, body }: FormBody,
) -> Result<impl IntoResponse, ClientRefusal> {
    let authorization = authorization(&headers);
    let tokens = state
        .server
        .token(&body, authorization, &budget)
        .await
        .inspect_err(|refused| {
            if let Refused::Error(error) = refused {
                doctor::note_token_failure(&state, &body, authorization, &headers, error);
            }
        })
        .map_err(|refused| ClientRefusal::new(refused, authorization))?;
    Ok(NoStore(Json(tokens)))
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    budget: Budget,
    FormBody { headers, body }: FormBody,
) -> Result<impl IntoResponse, ClientRefusal> {
    let authorization = authorization(&headers);
    state
        .server
        .revoke(&body, authorization, &budget)
        .await
        .map_err(|refused| ClientRefusal::new(refused, authorization))?;
    Ok(NoStore(()))
}

pub(crate) async fn introspect(
    State(state): State<AppState>,
    budget: Budget,
    FormBody { headers, body }: FormBody,
) -> Result<impl IntoResponse, ClientRefusal> {
    let authorization = authorization(&headers);
    let introspection = state
        .server
        .introspect(&body, authorization, &budget)
        .await
        .map_err(|refused| ClientRefusal::new(refused, authorization))?;
    Ok(NoStore(Json(introspection)))
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// A refusal at an endpoint where clients authenticate: the error, and whether the client sent
/// its credentials in the `Authorization` header (HTTP Basic).
pub(crate) struct ClientRefusal {
    refused: Refused,
    used_basic: bool,
}

impl ClientRefusal {
    fn new(refused: Refused, authorization: Option<&str>) -> Self {
        let used_basic = authorization.is_some_and(|a| {
            a.trim_start()
                .get(..6)
                .is_some_and(|s| s.eq_ignore_ascii_case("basic "))
        });
        Self {
            refused,
            used_basic,
        }
    }
}

/// RFC 6749 §5.2: a client that authenticated with the `Authorization` header and failed gets its
/// 401 with a matching `WWW-Authenticate` challenge. A spent failure budget is 429.
impl IntoResponse for ClientRefusal {
    fn into_response(self) -> Response {
        let challenge = matches!(
            &self.refused,
            Refused::Error(OAuthError {
                code: ErrorCode::InvalidClient,
                ..
            })
        ) && self.used_basic;
        let mut response = self.refused.into_response();
        if challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"token\""),
            );
        }
        response
    }
}
