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
use super::response::unavailable_page;
use super::response::{json_no_store, no_store};
use crate::audit::AuditEvent;
use crate::console::session::{self, SESSION_LIFETIME_SECS, Session};
use crate::console::{Admin, ConsoleError};
use crate::oauth::OAuthError;
use crate::oauth::budget::{Budget, Guessed};
use crate::oauth::secret::Secret;
use crate::pages;
use crate::passkey::{Enrolment, Purpose};
use crate::store::{GrantId, StoreError};

pub(crate) const CONSOLE_PATH: &str = "/oauth/console";
const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in request: the session and the cookie value it was found by.
struct SignedIn {
    token: Secret,
    session: Session,
}

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

async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Option<SignedIn>, StoreError> {
    let Some(token) = cookie_value(headers, cookie_name(state)) else {
        return Ok(None);
    };
    let Some(session) = session::find(&*state.server.tokens, token).await? else {
        return Ok(None);
    };
    // A session ends with the passkey that made it.
    if !state.passkeys.exists(&session.credential_id).await? {
        return Ok(None);
    }
    Ok(Some(SignedIn {
        token: token.into(),
        session,
    }))
}

/// A JSON request from a signed-in console: the session, with its CSRF token checked. As an
/// extractor, it answers 401 `login_required` or 403 before the handler runs.
pub(crate) struct Authorised;

impl FromRequestParts<AppState> for Authorised {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        authorised(state, &parts.headers).await.map(|_| Self)
    }
}

async fn authorised(state: &AppState, headers: &HeaderMap) -> Result<SignedIn, Response> {
    let signed_in = signed_in(state, headers)
        .await
        .map_err(|e| OAuthError::from(e).into_response())?
        .ok_or_else(|| {
            refusal(
                StatusCode::UNAUTHORIZED,
                "login_required",
                "your sign-in has expired; sign in again with your passkey",
            )
        })?;
    let csrf = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !session::csrf_matches(signed_in.token.expose(), csrf) {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "the request lacks this session's CSRF token; reload the console",
        ));
    }
    Ok(signed_in)
}

fn refusal(status: StatusCode, error: &str, description: &str) -> Response {
    json_no_store(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

fn console_error(error: ConsoleError) -> Response {
    match error {
        ConsoleError::NotFound(what) => refusal(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no such {what}; reload the console"),
        ),
        ConsoleError::LastPasskey | ConsoleError::PreRegistered => {
            refusal(StatusCode::CONFLICT, "conflict", &error.to_string())
        }
        ConsoleError::EmptyLabel => refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "give the passkey a name",
        ),
        ConsoleError::Store(error) => OAuthError::from(error).into_response(),
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
    let result = async {
        let Some(signed_in) = signed_in(&state, &headers).await? else {
            return Ok(pages::console_login(
                &state.app_name,
                state.passkeys.any_registered().await?,
            ));
        };
        let admin = Admin {
            server: &state.server,
        };
        let (grants, clients) = admin.overview().await?;
        let passkeys = state.passkeys.infos().await?;
        let traces = state.server.audit.journal().traces();
        let label = passkeys
            .iter()
            .find(|p| p.credential_id == signed_in.session.credential_id)
            .map_or("a passkey", |p| p.label.as_str());
        Ok::<_, StoreError>(pages::console(&pages::ConsolePage {
            app_name: &state.app_name,
            csrf_token: &session::csrf_token(signed_in.token.expose()),
            signed_in_with: label,
            grants: &grants,
            clients: &clients,
            clients_page: clients_page(query.as_deref()),
            passkeys: &passkeys,
            traces: &traces,
        }))
    };
    match result.await {
        Ok(page) => page,
        Err(error) => unavailable_page(&state, error),
    }
}

/// Start a sign-in assertion.
pub(crate) async fn sign_in_start(
    State(state): State<AppState>,
    JsonBody(_): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Response {
    match state.passkeys.start_authentication(Purpose::Console).await {
        Ok(challenge) => json_no_store(StatusCode::OK, &challenge),
        Err(error) => error.into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Assertion {
    ceremony_id: String,
    credential: Box<PublicKeyCredential>,
}

/// Finish the sign-in: verify the assertion, start a session, set its cookie.
pub(crate) async fn sign_in_finish(
    State(state): State<AppState>,
    budget: Budget,
    JsonBody(body): JsonBody<Assertion>,
) -> Response {
    let verified = state.passkeys.finish_authentication(
        &body.ceremony_id,
        &body.credential,
        &Purpose::Console,
    );
    let credential_id = match budget.check(Guessed::Owner, verified).await {
        Ok(credential_id) => credential_id,
        Err(refused) => return refused.into_response(),
    };
    let token =
        match session::create(&*state.server.tokens, state.server.now(), &credential_id).await {
            Ok(token) => token,
            Err(error) => return OAuthError::from(error).into_response(),
        };
    state
        .server
        .audit
        .emit(AuditEvent::ConsoleSignedIn { credential_id });
    let mut response = done();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&state, &token, SESSION_LIFETIME_SECS),
    );
    response
}

/// End the session (if any) and clear the cookie.
pub(crate) async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie_value(&headers, cookie_name(&state))
        && let Err(error) = session::end(&*state.server.tokens, token).await
    {
        return OAuthError::from(error).into_response();
    }
    let mut response = no_store(StatusCode::NO_CONTENT.into_response());
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&state, "", 0));
    response
}

#[derive(Debug, Deserialize)]
pub(crate) struct GrantRef {
    grant_id: String,
}

pub(crate) async fn revoke_grant(
    State(state): State<AppState>,
    _: Authorised,
    JsonBody(body): JsonBody<GrantRef>,
) -> Response {
    let admin = Admin {
        server: &state.server,
    };
    match admin.revoke_grant(&GrantId(body.grant_id)).await {
        Ok(()) => done(),
        Err(error) => console_error(error),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ClientRef {
    client_id: String,
}

pub(crate) async fn delete_client(
    State(state): State<AppState>,
    _: Authorised,
    JsonBody(body): JsonBody<ClientRef>,
) -> Response {
    let admin = Admin {
        server: &state.server,
    };
    match admin.delete_client(&body.client_id).await {
        Ok(revoked) => json_no_store(
            StatusCode::OK,
            &json!({ "status": "ok", "grants_revoked": revoked }),
        ),
        Err(error) => console_error(error),
    }
}

/// Remove every never-approved client that holds no grant.
pub(crate) async fn remove_unapproved_clients(
    State(state): State<AppState>,
    _: Authorised,
    JsonBody(_): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Response {
    let admin = Admin {
        server: &state.server,
    };
    match admin.remove_unapproved_clients().await {
        Ok(removed) => json_no_store(
            StatusCode::OK,
            &json!({ "status": "ok", "removed": removed }),
        ),
        Err(error) => OAuthError::from(error).into_response(),
    }
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
) -> Response {
    match state
        .passkeys
        .rename(&body.credential_id, &body.label)
        .await
    {
        Ok(()) => done(),
        Err(error) => console_error(error),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct PasskeyRef {
    credential_id: String,
}

pub(crate) async fn remove_passkey(
    State(state): State<AppState>,
    _: Authorised,
    JsonBody(body): JsonBody<PasskeyRef>,
) -> Response {
    match state.passkeys.remove(&body.credential_id).await {
        Ok(()) => done(),
        Err(error) => console_error(error),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct AddStart {
    label: Option<String>,
}

/// Start registering another passkey, authorised by the session.
pub(crate) async fn add_passkey_start(
    State(state): State<AppState>,
    _: Authorised,
    JsonBody(body): JsonBody<AddStart>,
) -> Response {
    match state
        .passkeys
        .start_registration(Enrolment::ConsoleSession, body.label.as_deref())
        .await
    {
        Ok(challenge) => json_no_store(StatusCode::OK, &challenge),
        Err(error) => error.into_response(),
    }
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
) -> Response {
    match state
        .passkeys
        .finish_registration(&body.ceremony_id, &body.credential)
        .await
    {
        Ok(label) => json_no_store(
            StatusCode::OK,
            &json!({ "status": "registered", "label": label }),
        ),
        Err(error) => error.into_response(),
    }
}
