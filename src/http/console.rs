//! `GET /oauth/console` and the JSON endpoints its script calls. Every endpoint but the sign-in
//! ones needs a live session (an HttpOnly, SameSite=Strict cookie made by a passkey assertion) and
//! its CSRF token in the `X-CSRF-Token` header; all sit behind the same-origin check.

use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::AppState;
use super::body::JsonBody;
use super::passkey::registered;
use super::response::unavailable_page;
use super::response::{json_no_store, no_store};
use crate::audit::AuditEvent;
use crate::console::ConsoleError;
use crate::oauth::OAuthError;
use crate::oauth::budget::{Budget, Guessed, Refused};
use crate::pages;
use crate::passkey::{Enrolment, PasskeyError, Purpose};
use crate::presence::session::{self, LiveSession, SESSION_LIFETIME_SECS};
use crate::store::{GrantId, StoreError};

const CSRF_HEADER: &str = "x-csrf-token";

/// `__Host-` binds the cookie to this exact origin (Secure, Path=/, no Domain); browsers accept
/// the prefix only over https, so plain-http development uses the bare name.
fn cookie_name(state: &AppState) -> &'static str {
    if state.origin.starts_with("https://") {
        "__Host-mcp-oauth-console"
    } else {
        "mcp-oauth-console"
    }
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn set_cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.origin.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
        cookie_name(state)
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The live session behind the request's cookie, if any.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<LiveSession>, StoreError> {
    let Some(token) = cookie_value(headers, cookie_name(state)) else {
        return Ok(None);
    };
    session::find(state.passkeys.presence(), token).await
}

/// A JSON request from a signed-in console: the live session, with its CSRF token checked. As an
/// extractor, it answers 401 `login_required` or 403 before the handler runs.
pub(crate) struct Authorised(LiveSession);

impl FromRequestParts<AppState> for Authorised {
    type Rejection = NotAuthorised;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, NotAuthorised> {
        let session = signed_in(state, &parts.headers)
            .await?
            .ok_or(NotAuthorised::LoginRequired)?;
        let csrf = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !session.csrf_matches(csrf) {
            return Err(NotAuthorised::NoCsrfToken);
        }
        Ok(Self(session))
    }
}

/// Why a console request was not let through to its handler.
pub(crate) enum NotAuthorised {
    /// No live session: none, expired, ended, or its passkey was removed.
    LoginRequired,
    /// The session's CSRF token is missing or wrong.
    NoCsrfToken,
    /// The session could not be looked up.
    Store(StoreError),
}

impl From<StoreError> for NotAuthorised {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl IntoResponse for NotAuthorised {
    fn into_response(self) -> Response {
        match self {
            Self::LoginRequired => refusal(
                StatusCode::UNAUTHORIZED,
                "login_required",
                "your sign-in has expired; sign in again with your passkey",
            ),
            Self::NoCsrfToken => refusal(
                StatusCode::FORBIDDEN,
                "invalid_request",
                "the request lacks this session's CSRF token; reload the console",
            ),
            Self::Store(error) => OAuthError::from(error).into_response(),
        }
    }
}

fn refusal(status: StatusCode, error: &str, description: &str) -> Response {
    json_no_store(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::NotFound(what) => refusal(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no such {what}; reload the console"),
            ),
            ConsoleError::LastPasskey
            | ConsoleError::PreRegistered
            | ConsoleError::MachineClient => {
                refusal(StatusCode::CONFLICT, "conflict", &self.to_string())
            }
            ConsoleError::EmptyLabel => refusal(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "give the passkey a name",
            ),
            ConsoleError::Store(error) => OAuthError::from(error).into_response(),
        }
    }
}

fn done() -> Response {
    json_no_store(StatusCode::OK, &json!({ "status": "ok" }))
}

/// The page of the client list asked for with `?clients=N`; the first for anything else.
fn clients_page(query: Option<&str>) -> usize {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "clients")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(1)
}

/// `GET /oauth/console`: the console when signed in, else the sign-in view. `?clients=N` shows
/// the Nth page of the client list.
pub(crate) async fn page(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let page = async {
        let Some(session) = signed_in(&state, &headers).await? else {
            return Ok(pages::console_login(
                &state.app_name,
                state.passkeys.any_registered().await?,
            ));
        };
        let admin = state.admin();
        let (grants, clients) = admin.overview().await?;
        let passkeys = admin.passkeys().await?;
        let traces = admin.connection_traces();
        let label = passkeys
            .iter()
            .find(|p| p.credential_id == session.credential_id())
            .map_or("a passkey", |p| p.label.as_str());
        Ok::<_, StoreError>(pages::console(&pages::ConsolePage {
            app_name: &state.app_name,
            csrf_token: &session.csrf_token(),
            signed_in_with: label,
            grants: &grants,
            clients: &clients,
            clients_page: clients_page(query.as_deref()),
            passkeys: &passkeys,
            traces: &traces,
        }))
    };
    page.await
        .unwrap_or_else(|error| unavailable_page(&state, error))
}

/// Start a sign-in assertion.
pub(crate) async fn sign_in_start(
    State(state): State<AppState>,
    JsonBody(_): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Result<Response, PasskeyError> {
    let challenge = state
        .passkeys
        .start_authentication(Purpose::Console)
        .await?;
    Ok(json_no_store(StatusCode::OK, &challenge))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Assertion {
    ceremony_id: String,
    credential: Box<PublicKeyCredential>,
}

/// Finish the sign-in: verify the assertion, start a session with it, set its cookie.
pub(crate) async fn sign_in_finish(
    State(state): State<AppState>,
    budget: Budget,
    JsonBody(body): JsonBody<Assertion>,
) -> Result<Response, Refused> {
    let verified = async {
        state
            .passkeys
            .presence()
            .sign_in(&body.ceremony_id, &body.credential)
            .await
            .map_err(OAuthError::from)
    };
    let signed_in = budget.check(Guessed::Owner, verified).await?;
    let credential_id = signed_in.credential_id().to_owned();
    let token = session::create(state.passkeys.presence(), signed_in).await?;
    state
        .server
        .audit()
        .emit(AuditEvent::ConsoleSignedIn { credential_id });
    let cookie = set_cookie(&state, &token, SESSION_LIFETIME_SECS);
    Ok(([(header::SET_COOKIE, cookie)], done()).into_response())
}

/// End the session (if any) and clear the cookie.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    if let Some(token) = cookie_value(&headers, cookie_name(&state)) {
        session::end(state.passkeys.presence(), token).await?;
    }
    let cookie = set_cookie(&state, "", 0);
    Ok(no_store(
        (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response(),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct GrantRef {
    grant_id: String,
}

pub(crate) async fn revoke_grant(
    State(state): State<AppState>,
    _: Authorised,
    JsonBody(body): JsonBody<GrantRef>,
) -> Result<Response, ConsoleError> {
    let admin = state.admin();
    admin.revoke_grant(&GrantId(body.grant_id)).await?;
    Ok(done())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ClientRef {
    client_id: String,
}

pub(crate) async fn delete_client(
    State(state): State<AppState>,
    _: Authorised,
    JsonBody(body): JsonBody<ClientRef>,
) -> Result<Response, ConsoleError> {
    let admin = state.admin();
    let revoked = admin.delete_client(&body.client_id).await?;
    Ok(json_no_store(
        StatusCode::OK,
        &json!({ "status": "ok", "grants_revoked": revoked }),
    ))
}

/// Remove every never-approved client that holds no grant.
pub(crate) async fn remove_unapproved_clients(
    State(state): State<AppState>,
    _: Authorised,
    JsonBody(_): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Result<Response, OAuthError> {
    let admin = state.admin();
    let removed = admin.remove_unapproved_clients().await?;
    Ok(json_no_store(
        StatusCode::OK,
        &json!({ "status": "ok", "removed": removed }),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Rename {
    credential_id: String,
    label: String,
}

pub(crate) async fn rename_passkey(
    State(state): State<AppState>,
    _: Authorised,
    JsonBody(body): JsonBody<Rename>,
) -> Result<Response, ConsoleError> {
    state
        .admin()
        .rename_passkey(&body.credential_id, &body.label)
        .await?;
    Ok(done())
}

#[derive(Debug, Deserialize)]
pub(crate) struct PasskeyRef {
    credential_id: String,
}

pub(crate) async fn remove_passkey(
    State(state): State<AppState>,
    _: Authorised,
    JsonBody(body): JsonBody<PasskeyRef>,
) -> Result<Response, ConsoleError> {
    state.admin().remove_passkey(&body.credential_id).await?;
    Ok(done())
}

#[derive(Debug, Deserialize)]
pub(crate) struct AddStart {
    label: Option<String>,
}

/// Start registering another passkey, authorised by the live session (spent here).
pub(crate) async fn add_passkey_start(
    State(state): State<AppState>,
    Authorised(session): Authorised,
    JsonBody(body): JsonBody<AddStart>,
) -> Result<Response, PasskeyError> {
    let challenge = state
        .passkeys
        .start_registration(Enrolment::ConsoleSession(session), body.label.as_deref())
        .await?;
    Ok(json_no_store(StatusCode::OK, &challenge))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AddFinish {
    ceremony_id: String,
    credential: Box<RegisterPublicKeyCredential>,
}

pub(crate) async fn add_passkey_finish(
    State(state): State<AppState>,
    _: Authorised,
    JsonBody(body): JsonBody<AddFinish>,
) -> Result<Response, PasskeyError> {
    let label = state
        .passkeys
        .finish_registration(&body.ceremony_id, &body.credential)
        .await?;
    Ok(registered(&label))
}
