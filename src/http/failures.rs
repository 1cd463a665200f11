//! The failure budget as a handler argument: the caller's [`Budget`], from its address, for the
//! endpoints that check a credential; and the 429 once it is spent.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::rate_limit::too_many_requests;
use crate::oauth::budget::{Budget, Exhausted, Refused};

impl FromRequestParts<AppState> for Budget {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        Ok(match &state.limits {
            Some(limits) => Budget::new(
                Arc::clone(&limits.failures),
                limits.key_of(&parts.extensions, &parts.headers),
            ),
            None => Budget::unlimited(),
        })
    }
}

/// 429 with `Retry-After`: nothing was checked.
impl IntoResponse for Exhausted {
    fn into_response(self) -> Response {
        crate::telemetry::rate_limited("failures");
        too_many_requests(self.wait_secs)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::Error(error) => error.into_response(),
            Self::Limited(exhausted) => exhausted.into_response(),
        }
    }
}
