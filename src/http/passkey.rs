//! `GET /passkey/register` and the JSON endpoints its script calls; and how a passkey error
//! answers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::AppState;
use super::body::JsonBody;
use super::response::json_no_store;
use super::response::unavailable_page;
use crate::oauth::budget::{Budget, Guessed, Refused};
use crate::oauth::{ErrorCode, OAuthError};
use crate::pages;
use crate::passkey::{Enrolment, PasskeyError, Purpose};
use crate::rules::secret::Secret;

/// In the protocol's terms: a presence not shown is `access_denied` (403, and it spends the
/// failure budget), an unusable ceremony `invalid_request`, an outage `temporarily_unavailable`.
impl From<PasskeyError> for OAuthError {
    fn from(error: PasskeyError) -> Self {
        match error {
            PasskeyError::Denied(description) => Self::new(ErrorCode::AccessDenied, description),
            PasskeyError::Unusable(description) => Self::invalid_request(description),
            PasskeyError::Internal(description) => Self::new(ErrorCode::ServerError, description),
            PasskeyError::Store(error) => error.into(),
        }
    }
}

impl IntoResponse for PasskeyError {
    fn into_response(self) -> Response {
        OAuthError::from(self).into_response()
    }
}

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
) -> Result<Response, PasskeyError> {
    let challenge = state.passkeys.start_authentication(Purpose::Enrol).await?;
    Ok(json_no_store(StatusCode::OK, &challenge))
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

/// What authorises a registration, as the request says; checked on the caller's failure budget.
enum Authority {
    SetupToken(Secret),
    Approval(ApprovalAssertion),
}

pub(crate) async fn start(
    State(state): State<AppState>,
    budget: Budget,
    JsonBody(body): JsonBody<Start>,
) -> Result<Response, Refused> {
    let authority = match (
        body.setup_token.filter(|t| !t.expose().trim().is_empty()),
        body.approval,
    ) {
        (Some(token), None) => Authority::SetupToken(token.expose().trim().into()),
        (None, Some(approval)) => Authority::Approval(approval),
        (Some(_), Some(_)) => {
            return Err(
                OAuthError::invalid_request("send a setup token or an approval, not both").into(),
            );
        }
        (None, None) => {
            return Err(OAuthError::invalid_request(
                "a setup token, or approval by an existing passkey, is required",
            )
            .into());
        }
    };
    let guessed = match authority {
        Authority::SetupToken(_) => Guessed::SetupToken,
        Authority::Approval(_) => Guessed::Owner,
    };
    let started = async {
        let enrolment = match authority {
            Authority::SetupToken(token) => Enrolment::SetupToken(token),
            Authority::Approval(assertion) => Enrolment::Approved(
                state
                    .passkeys
                    .presence()
                    .enrolment(&assertion.ceremony_id, &assertion.credential)
                    .await?,
            ),
        };
        state
            .passkeys
            .start_registration(enrolment, body.label.as_deref())
            .await
            .map_err(OAuthError::from)
    };
    let challenge = budget.check(guessed, started).await?;
    Ok(json_no_store(StatusCode::OK, &challenge))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Finish {
    ceremony_id: String,
    credential: Box<RegisterPublicKeyCredential>,
}

pub(crate) async fn finish(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Finish>,
) -> Result<Response, PasskeyError> {
    let label = state
        .passkeys
        .finish_registration(&body.ceremony_id, &body.credential)
        .await?;
    Ok(registered(&label))
}

/// A passkey was registered under `label`.
pub(crate) fn registered(label: &str) -> Response {
    json_no_store(
        StatusCode::OK,
        &serde_json::json!({ "status": "registered", "label": label }),
    )
}
