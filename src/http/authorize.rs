//! `GET /authorize` (the consent page) and the JSON endpoints its script calls.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use webauthn_rs::prelude::PublicKeyCredential;

use super::body::JsonBody;
use super::response::{RETRY_AFTER_SECS, json_no_store};
use super::{AppState, doctor};
use crate::audit::StepKind;
use crate::oauth::{Decision, ErrorCode, OAuthError, Rejection};
use crate::pages;
use crate::passkey::Purpose;
use crate::rules::redirect_uri;
use crate::store::TokenHash;

pub(crate) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, RefusedPage> {
    let query = query.unwrap_or_default();
    let outcome = state.server.begin_authorization(query.as_bytes()).await;
    let (client_id, error) = match &outcome {
        Ok(consent) => (Some(consent.client.client_id.clone()), None),
        Err(Rejection::Page(error) | Rejection::Link { error, .. }) => {
            (claimed_client_id(&query), Some(error))
        }
    };
    doctor::note(
        &state,
        client_id.as_deref(),
        &headers,
        StepKind::Authorize,
        error,
    );
    let refused = |rejection| RefusedPage {
        app_name: state.app_name.clone(),
        rejection,
    };
    let consent = outcome.map_err(refused)?;
    let has_passkeys = state
        .passkeys
        .any_registered()
        .await
        .map_err(|error| refused(Rejection::from(error)))?;
    let redirect_origin = redirect_uri::origin_of(&consent.redirect_uri);
    Ok(pages::consent(&pages::ConsentPage {
        app_name: &state.app_name,
        client_name: consent.client.name.as_deref(),
        client_id: &consent.client.client_id,
        pre_registered: consent.client.pre_registered,
        verified_host: consent.client.metadata_host.as_deref(),
        redirect_origin: &redirect_origin,
        redirect_is_loopback: url::Url::parse(&consent.redirect_uri)
            .is_ok_and(|u| redirect_uri::is_loopback_host(&u)),
        scopes: &consent.scopes,
        scope_descriptions: state.server.scope_descriptions(),
        resource: state.server.resource().as_str(),
        request_id: &consent.request_id,
        has_passkeys,
        register_path: crate::paths::PASSKEY_REGISTER,
    }))
}

/// An authorization request refused: an error page, never a redirect; with a link back to the
/// application when its redirect URI is known to be its own.
pub(crate) struct RefusedPage {
    app_name: std::sync::Arc<str>,
    rejection: Rejection,
}

impl IntoResponse for RefusedPage {
    fn into_response(self) -> Response {
        let (error, return_to) = match &self.rejection {
            Rejection::Page(error) => (error, None),
            Rejection::Link { error, redirect_to } => (error, Some(redirect_to)),
        };
        let origin = return_to.map(|href| redirect_uri::origin_of(href));
        let return_to = return_to
            .zip(origin.as_deref())
            .map(|(href, origin)| pages::ReturnLink { href, origin });
        let (status, title) = match error.code {
            ErrorCode::TemporarilyUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable")
            }
            _ if return_to.is_some() => (
                StatusCode::BAD_REQUEST,
                "The application sent an invalid request",
            ),
            _ => (
                StatusCode::BAD_REQUEST,
                "This connection request can’t be used",
            ),
        };
        let mut page = pages::error(&pages::ErrorPage {
            app_name: &self.app_name,
            status,
            title,
            message: &as_sentence(&error.description),
            return_to,
        });
        if status == StatusCode::SERVICE_UNAVAILABLE {
            page.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        page
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct RequestRef {
    request_id: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Approval {
    request_id: String,
    ceremony_id: String,
    credential: Box<PublicKeyCredential>,
}

pub(crate) async fn challenge(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RequestRef>,
) -> Result<Response, OAuthError> {
    state.server.pending_request(&body.request_id).await?;
    let purpose = Purpose::Approve {
        request: TokenHash::of(&body.request_id),
    };
    let challenge = state.passkeys.start_authentication(purpose).await?;
    Ok(json_no_store(StatusCode::OK, &challenge))
}

/// Approve with an assertion made for this request: the check returns the approval, which names
/// the request and is spent approving it.
pub(crate) async fn approve(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Approval>,
) -> Result<Response, OAuthError> {
    let approval = state
        .passkeys
        .presence()
        .approval(&body.ceremony_id, &body.credential, &body.request_id)
        .await?;
    let decision = state.server.approve(approval).await?;
    Ok(redirect_to(&decision))
}

pub(crate) async fn deny(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RequestRef>,
) -> Result<Response, OAuthError> {
    let decision = state.server.deny(&body.request_id).await?;
    Ok(redirect_to(&decision))
}

/// Where the consent page's script sends the browser after the owner's decision.
fn redirect_to(decision: &Decision) -> Response {
    json_no_store(
        StatusCode::OK,
        &serde_json::json!({ "redirect_to": decision.redirect_to }),
    )
}

/// The `client_id` an authorization request names, for the doctor.
fn claimed_client_id(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "client_id")
        .map(|(_, value)| value.into_owned())
}

/// Protocol descriptions are lower-case fragments (RFC 6749 style); a page shows a sentence.
fn as_sentence(description: &str) -> String {
    let mut chars = description.chars();
    let mut sentence: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !sentence.ends_with(['.', '!', '?']) {
        sentence.push('.');
    }
    sentence
}
