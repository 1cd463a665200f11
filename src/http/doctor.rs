//! What the HTTP layer tells the connection doctor: the steps the audit events do not cover
//! (discovery, failed registrations, the consent page, failed token requests).

use axum::http::{HeaderMap, header};

use super::AppState;
use crate::audit::{Source, StepKind};
use crate::oauth::OAuthError;
use crate::oauth::client_auth::claimed_client;

pub(crate) fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

/// Record a step by `client_id`, or by the user agent when the client is not known.
pub(crate) fn note(
    state: &AppState,
    client_id: Option<&str>,
    headers: &HeaderMap,
    kind: StepKind,
    error: Option<&OAuthError>,
) {
    state.server.audit().doctor().record(
        Source::of(client_id, user_agent(headers)),
        kind,
        error.map(|e| (e.code.as_str(), &*e.description)),
        None,
    );
}

/// Record a failed token request under the client it claimed to be.
pub(crate) fn note_token_failure(
    state: &AppState,
    body: &[u8],
    authorization: Option<&str>,
    headers: &HeaderMap,
    error: &OAuthError,
) {
    let (client_id, grant_type) = claimed_client(body, authorization);
    let kind = match grant_type.as_deref() {
        Some("refresh_token") => StepKind::Refresh,
        Some("client_credentials") => StepKind::MachineToken,
        _ => StepKind::CodeExchange,
    };
    note(state, client_id.as_deref(), headers, kind, Some(error));
}
