//! `GET /passkey/register` and the JSON endpoints its script calls.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::AppState;
use super::body::JsonBody;
use super::response::json_no_store;
use super::response::unavailable_page;
use crate::oauth::OAuthError;
use crate::oauth::budget::{Budget, Guessed};
use crate::pages;
use crate::passkey::{Enrolment, Purpose};
use crate::rules::secret::Secret;

pub(crate) async fn page(State(state): State<AppState>) -> Response {
    match state.passkeys.any_registered().await {
        Ok(has_passkeys) => pages::register(&pages::RegisterPage {
            app_name: &state.app_name,
            has_passkeys,
        }),
        Err(error) => unavailable_page(&state, error),
    }
}

/// Start an assertion by an existing passkey, to authorise registering another.
pub(crate) async fn approval(
    State(state): State<AppState>,
    JsonBody(_): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Response {
    match state.passkeys.start_authentication(Purpose::Enrol).await {
        Ok(challenge) => json_no_store(StatusCode::OK, &challenge),
        Err(error) => error.into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Start {
    setup_token: Option<Secret>,
    approval: Option<ApprovalAssertion>,
    label: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApprovalAssertion {
    ceremony_id: String,
    credential: Box<PublicKeyCredential>,
}

pub(crate) async fn start(
    State(state): State<AppState>,
    budget: Budget,
    JsonBody(body): JsonBody<Start>,
) -> Response {
    let enrolment = match (
        body.setup_token.filter(|t| !t.expose().trim().is_empty()),
        body.approval,
    ) {
        (Some(token), None) => Enrolment::SetupToken(token.expose().trim().into()),
        (None, Some(approval)) => Enrolment::Approval {
            ceremony_id: approval.ceremony_id,
            credential: approval.credential,
        },
        (Some(_), Some(_)) => {
            return OAuthError::invalid_request("send a setup token or an approval, not both")
                .into_response();
        }
        (None, None) => {
            return OAuthError::invalid_request(
                "a setup token, or approval by an existing passkey, is required",
            )
            .into_response();
        }
    };
    let guessed = match enrolment {
        Enrolment::SetupToken(_) => Guessed::SetupToken,
        Enrolment::Approval { .. } | Enrolment::ConsoleSession => Guessed::Owner,
    };
    let started = state
        .passkeys
        .start_registration(enrolment, body.label.as_deref());
    match budget.check(guessed, started).await {
        Ok(challenge) => json_no_store(StatusCode::OK, &challenge),
        Err(refused) => refused.into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Finish {
    ceremony_id: String,
    credential: Box<RegisterPublicKeyCredential>,
}

pub(crate) async fn finish(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Finish>,
) -> Response {
    match state
        .passkeys
        .finish_registration(&body.ceremony_id, &body.credential)
        .await
    {
        Ok(label) => json_no_store(
            StatusCode::OK,
            &serde_json::json!({ "status": "registered", "label": label }),
        ),
        Err(error) => error.into_response(),
    }
}
