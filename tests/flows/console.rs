//! The owner console: passkey sign-in, session cookie and CSRF, grants and clients, passkeys, the
//! connection doctor, and the same operations through the Rust API.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use mcp_oauth::console::{ConsoleError, Registration, StepKind};
use mcp_oauth::store::{
    GrantId, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime,
};
use mcp_oauth::{McpOAuth, MemoryStore};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use webauthn_authenticator_rs::WebauthnAuthenticator;

use crate::common::*;

/// A signed-in console: the cookie pair and the page's CSRF token.
pub(crate) struct Session {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

pub(crate) async fn sign_in_with(server: &TestServer, key: &Mutex<SoftAuthenticator>) -> Session {
    let challenge = server
        .post_json("/oauth/console/signin/start", &json!({}))
        .await;
    assert_eq!(challenge.status, StatusCode::OK, "{}", challenge.text());
    let challenge = challenge.json();
    let credential = server.assert_with(key, &challenge).await;
    let reply = server
        .post_json(
            "/oauth/console/signin/finish",
            &json!({ "ceremony_id": challenge["ceremony_id"], "credential": credential }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let set_cookie = reply.header("set-cookie").expect("a session cookie");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let page = console_page(server, Some(&cookie)).await;
    let marker = "data-csrf=\"";
    let start = page.find(marker).expect("signed-in console has data-csrf") + marker.len();
    let end = page[start..].find('"').unwrap() + start;
    Session {
        cookie,
        csrf: page[start..end].to_owned(),
    }
}

pub(crate) async fn sign_in(server: &TestServer) -> Session {
    sign_in_with(server, &server.key).await
}

pub(crate) async fn console_page(server: &TestServer, cookie: Option<&str>) -> String {
    let mut request = Request::get("/oauth/console");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let reply = server.send(request.body(Body::empty()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    reply.text()
}

/// A console JSON request with the session's cookie and CSRF token (either may be left out).
pub(crate) async fn console_post(
    server: &TestServer,
    session: Option<&Session>,
    csrf: Option<&str>,
    path: &str,
    body: Value,
) -> Reply {
    let mut request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, SERVER_URL);
    if let Some(session) = session {
        request = request.header(header::COOKIE, &session.cookie);
    }
    if let Some(csrf) = csrf.or(session.map(|s| s.csrf.as_str())) {
        request = request.header("x-csrf-token", csrf);
    }
    server
        .send(request.body(Body::from(body.to_string())).unwrap())
        .await
}

#[tokio::test]
async fn sign_in_needs_a_passkey_and_sets_a_strict_http_only_cookie() {
    let server = TestServer::ready().await;
    let page = console_page(&server, None).await;
    assert!(page.contains("id=\"console-signin\""));
    assert!(
        !page.contains("id=\"grants\""),
        "nothing is listed before sign-in"
    );

    let challenge = server
        .post_json("/oauth/console/signin/start", &json!({}))
        .await
        .json();
    let credential = server.assert_with(&server.key, &challenge).await;
    let reply = server
        .post_json(
            "/oauth/console/signin/finish",
            &json!({ "ceremony_id": challenge["ceremony_id"], "credential": credential }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let cookie = reply.header("set-cookie").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=900"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(cookie.starts_with("mcp-oauth-console=mcp_os_"));
    assert!(
        !cookie.contains("Secure"),
        "plain-http development has no Secure cookie"
    );

    // The same assertion cannot be spent twice.
    let again = server
        .post_json(
            "/oauth/console/signin/finish",
            &json!({ "ceremony_id": challenge["ceremony_id"], "credential": credential }),
        )
        .await;
    assert!(again.status.is_client_error());
    assert!(again.header("set-cookie").is_none());
}

#[tokio::test]
async fn https_servers_use_a_host_prefixed_secure_cookie() {
    let mut config = config();
    config.server_url = "https://mcp.example.com".into();
    let server = TestServer::with_config(config).await;
    server.register_passkey(SETUP_TOKEN).await;
    // The soft passkey signs for the configured origin only, so exercise the cookie through a
    // sign-out, which clears it with the same attributes.
    let reply = server
        .send(
            Request::post("/oauth/console/signout")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ORIGIN, "https://mcp.example.com")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let cookie = reply.header("set-cookie").unwrap();
    assert!(cookie.starts_with("__Host-mcp-oauth-console=;"), "{cookie}");
    assert!(cookie.contains("; Secure") && cookie.contains("Max-Age=0"));
}

#[tokio::test]
async fn every_operation_needs_a_session_and_its_csrf_token() {
    let server = TestServer::ready().await;
    let session = sign_in(&server).await;
    let other = sign_in(&server).await;
    let body = json!({ "grant_id": "whatever" });
    let path = "/oauth/console/grants/revoke";

    let anonymous = console_post(&server, None, None, path, body.clone()).await;
    anonymous.assert_oauth_error(401, "login_required");
    let forged = Session {
        cookie: "mcp-oauth-console=mcp_os_forged".into(),
        csrf: session.csrf.clone(),
    };
    console_post(&server, Some(&forged), None, path, body.clone())
        .await
        .assert_oauth_error(401, "login_required");
    console_post(&server, Some(&session), Some(""), path, body.clone())
        .await
        .assert_oauth_error(403, "invalid_request");
    console_post(
        &server,
        Some(&session),
        Some(&other.csrf),
        path,
        body.clone(),
    )
    .await
    .assert_oauth_error(403, "invalid_request");

    // A cross-site request is refused before the handler, session or not.
    let cross_site = server
        .send(
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ORIGIN, "https://evil.example")
                .header(header::COOKIE, &session.cookie)
                .header("x-csrf-token", &session.csrf)
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);

    // With both, the request reaches the operation (which finds no such grant).
    console_post(&server, Some(&session), None, path, body.clone())
        .await
        .assert_oauth_error(404, "not_found");

    // Signing out ends the session on the server, not just the cookie.
    let reply = console_post(
        &server,
        Some(&session),
        None,
        "/oauth/console/signout",
        json!({}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    console_post(&server, Some(&session), None, path, body)
        .await
        .assert_oauth_error(401, "login_required");
    assert!(
        console_page(&server, Some(&session.cookie))
            .await
            .contains("console-signin")
    );
}

#[tokio::test]
async fn a_sign_in_assertion_cannot_approve_a_client_and_an_approval_cannot_sign_in() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let request_id = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;

    let sign_in = server
        .post_json("/oauth/console/signin/start", &json!({}))
        .await
        .json();
    let credential = server.assert_with(&server.key, &sign_in).await;
    let approve = server
        .post_json(
            "/authorize/approve",
            &json!({ "request_id": request_id, "ceremony_id": sign_in["ceremony_id"], "credential": credential }),
        )
        .await;
    assert!(approve.status.is_client_error(), "{}", approve.text());

    let approval = server
        .post_json("/authorize/challenge", &json!({ "request_id": request_id }))
        .await
        .json();
    let credential = server.assert_with(&server.key, &approval).await;
    let reply = server
        .post_json(
            "/oauth/console/signin/finish",
            &json!({ "ceremony_id": approval["ceremony_id"], "credential": credential }),
        )
        .await;
    assert!(reply.status.is_client_error());
    assert!(reply.header("set-cookie").is_none());
}

#[tokio::test]
async fn revoking_a_grant_in_the_console_stops_its_tokens_at_once() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(server.mcp(Some(access)).await.status, StatusCode::OK);

    let session = sign_in(&server).await;
    let page = console_page(&server, Some(&session.cookie)).await;
    assert!(page.contains("Test Client") && page.contains(&client_id));
    let grants = server.oauth.admin().grants().await.unwrap();
    assert_eq!(grants.len(), 1);
    let grant = &grants[0];
    assert_eq!(grant.client_id, client_id);
    assert_eq!(grant.scopes, ["mcp"]);
    assert_eq!(
        grant.redirect_origin.as_deref(),
        Some("http://127.0.0.1:9999")
    );
    assert!(matches!(grant.registration, Registration::Dynamic { .. }));
    assert!(grant.last_used_at.is_some() && grant.access_expires_at.is_some());
    assert!(page.contains(&format!("data-grant-id=\"{}\"", grant.grant_id)));

    let reply = console_post(
        &server,
        Some(&session),
        None,
        "/oauth/console/grants/revoke",
        json!({ "grant_id": grant.grant_id.0 }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    server
        .mcp(Some(access))
        .await
        .assert_oauth_error(401, "invalid_token");
    server
        .refresh(&client_id, refresh)
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert!(server.oauth.admin().grants().await.unwrap().is_empty());
    assert!(
        console_page(&server, Some(&session.cookie))
            .await
            .contains("id=\"no-grants\"")
    );
}

#[tokio::test]
async fn grants_track_refreshes_and_the_rust_api_revokes_too() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let refreshed = server
        .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refreshed.status, StatusCode::OK);
    let access = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let grants = server.oauth.admin().grants().await.unwrap();
    assert_eq!(grants.len(), 1, "a refresh stays within its grant");
    assert!(grants[0].refresh_expires_at.unwrap() > UnixTime::now().plus(3600));

    assert!(matches!(
        server
            .oauth
            .admin()
            .revoke_grant(&GrantId("no-such-grant".into()))
            .await,
        Err(ConsoleError::NotFound(_))
    ));
    server
        .oauth
        .admin()
        .revoke_grant(&grants[0].grant_id)
        .await
        .unwrap();
    server
        .mcp(Some(&access))
        .await
        .assert_oauth_error(401, "invalid_token");
}

#[tokio::test]
async fn deleting_a_client_revokes_its_grants_and_its_registration() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let (other_id, other_tokens) = server.connected_client().await;
    let session = sign_in(&server).await;

    let reply = console_post(
        &server,
        Some(&session),
        None,
        "/oauth/console/clients/delete",
        json!({ "client_id": client_id }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["grants_revoked"], 1);
    server
        .mcp(tokens["access_token"].as_str())
        .await
        .assert_oauth_error(401, "invalid_token");
    server
        .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
        .await
        .assert_oauth_error(401, "invalid_client");
    assert_eq!(
        server
            .mcp(other_tokens["access_token"].as_str())
            .await
            .status,
        StatusCode::OK,
        "another client is untouched"
    );
    let clients = server.oauth.admin().clients().await.unwrap();
    assert!(clients.iter().all(|c| c.client_id != client_id));
    assert!(
        clients
            .iter()
            .any(|c| c.client_id == other_id && c.grants == 1)
    );

    // The configured client is configuration: its grants can be revoked, it cannot be deleted.
    console_post(
        &server,
        Some(&session),
        None,
        "/oauth/console/clients/delete",
        json!({ "client_id": CLIENT_ID }),
    )
    .await
    .assert_oauth_error(409, "conflict");
    console_post(
        &server,
        Some(&session),
        None,
        "/oauth/console/clients/delete",
        json!({ "client_id": "never-registered" }),
    )
    .await
    .assert_oauth_error(404, "not_found");
}

#[tokio::test]
async fn passkeys_are_renamed_added_and_removed_but_never_the_last() {
    let server = TestServer::ready().await;
    let session = sign_in(&server).await;
    let first = server.oauth.admin().passkeys().await.unwrap()[0]
        .credential_id
        .clone();

    let remove_first = || {
        console_post(
            &server,
            Some(&session),
            None,
            "/oauth/console/passkeys/remove",
            json!({ "credential_id": first }),
        )
    };
    remove_first().await.assert_oauth_error(409, "conflict");

    let reply = console_post(
        &server,
        Some(&session),
        None,
        "/oauth/console/passkeys/rename",
        json!({ "credential_id": first, "label": "  Laptop\u{7} " }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        server.oauth.admin().passkeys().await.unwrap()[0].label,
        "Laptop"
    );
    console_post(
        &server,
        Some(&session),
        None,
        "/oauth/console/passkeys/rename",
        json!({ "credential_id": first, "label": " \n " }),
    )
    .await
    .assert_oauth_error(400, "invalid_request");

    // Add a second passkey, on another authenticator, from the console.
    let phone = Arc::new(Mutex::new(SoftAuthenticator::new(true)));
    let start = console_post(
        &server,
        Some(&session),
        None,
        "/oauth/console/passkeys/add/start",
        json!({ "label": "Phone" }),
    )
    .await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.text());
    let start = start.json();
    let options = serde_json::from_value(start["options"].clone()).unwrap();
    let credential = phone
        .lock()
        .await
        .do_registration(
            mcp_oauth::webauthn_rs::prelude::Url::parse(SERVER_URL).unwrap(),
            options,
        )
        .unwrap();
    let added = console_post(
        &server,
        Some(&session),
        None,
        "/oauth/console/passkeys/add/finish",
        json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text());
    assert_eq!(server.oauth.admin().passkeys().await.unwrap().len(), 2);

    // Now the first can go, and the session it signed in ends with it.
    let reply = remove_first().await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let passkeys = server.oauth.admin().passkeys().await.unwrap();
    assert_eq!(passkeys.len(), 1);
    assert_eq!(passkeys[0].label, "Phone");
    remove_first()
        .await
        .assert_oauth_error(401, "login_required");

    // The remaining passkey signs in and approves; the removed one does neither.
    let phone_session = sign_in_with(&server, &phone).await;
    console_post(
        &server,
        Some(&phone_session),
        None,
        "/oauth/console/passkeys/remove",
        json!({ "credential_id": passkeys[0].credential_id }),
    )
    .await
    .assert_oauth_error(409, "conflict");
    // Its authenticator still holds the credential and signs when asked; the server refuses it.
    let challenge = server
        .post_json("/oauth/console/signin/start", &json!({}))
        .await
        .json();
    let old_key = server.assert_with(&server.key, &challenge).await;
    server
        .post_json(
            "/oauth/console/signin/finish",
            &json!({ "ceremony_id": challenge["ceremony_id"], "credential": old_key }),
        )
        .await
        .assert_oauth_error(403, "access_denied");
}

/// A session ends with the passkey that signed in, wherever the passkey is removed (here through
/// the Rust API, not the console): the page is the sign-in view again, and no operation, adding a
/// passkey included, is let through.
#[tokio::test]
async fn a_session_whose_passkey_was_removed_elsewhere_can_do_nothing() {
    let server = TestServer::ready().await;
    let phone = Arc::new(Mutex::new(SoftAuthenticator::new(true)));
    crate::passkeys::add_passkey_approved_by_the_owner(&server, &phone).await;
    let session = sign_in_with(&server, &phone).await;
    let phone_id = server
        .oauth
        .admin()
        .passkeys()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.label == "phone")
        .expect("the added passkey")
        .credential_id;
    server
        .oauth
        .admin()
        .remove_passkey(&phone_id)
        .await
        .unwrap();

    let page = console_page(&server, Some(&session.cookie)).await;
    assert!(page.contains("id=\"console-signin\""), "{page}");
    assert!(
        !page.contains("data-csrf"),
        "no CSRF token for a dead session"
    );
    for (path, body) in [
        (
            "/oauth/console/passkeys/add/start",
            json!({ "label": "thief" }),
        ),
        ("/oauth/console/grants/revoke", json!({ "grant_id": "any" })),
        (
            "/oauth/console/passkeys/remove",
            json!({ "credential_id": phone_id }),
        ),
    ] {
        console_post(&server, Some(&session), None, path, body)
            .await
            .assert_oauth_error(401, "login_required");
    }
    assert_eq!(server.oauth.admin().passkeys().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_console_escapes_what_clients_say_about_themselves() {
    let server = TestServer::ready().await;
    let client_id = server
        .client_id_for(json!({
            "redirect_uris": [LOOPBACK_REDIRECT],
            "token_endpoint_auth_method": "none",
            "client_name": "<script>alert(1)</script><img src=x onerror=alert(2)>",
        }))
        .await;
    let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;
    server
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await;
    let session = sign_in(&server).await;
    let page = console_page(&server, Some(&session.cookie)).await;
    assert!(!page.contains("<script>alert"));
    assert!(!page.contains("<img src=x"));
    assert!(
        page.contains("&#60;script&#62;alert(1)"),
        "the name is shown, escaped"
    );
}

#[tokio::test]
async fn the_doctor_shows_each_step_in_order_and_where_it_failed() {
    let server = TestServer::ready().await;
    let agent = "DoctorTest/1.0";
    let get_as = |path: &'static str| {
        server.send(
            Request::get(path)
                .header(header::USER_AGENT, agent)
                .body(Body::empty())
                .unwrap(),
        )
    };
    let challenge = server
        .send(
            Request::post("/mcp")
                .header(header::USER_AGENT, agent)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    get_as("/.well-known/oauth-protected-resource/mcp").await;
    get_as("/.well-known/oauth-authorization-server").await;

    let (client_id, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    server.mcp(Some(access)).await;
    server.mcp(Some(access)).await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    server.refresh(&client_id, refresh).await;
    // A bad exchange: the code was never issued.
    server
        .exchange(
            &client_id,
            "mcp_ac_bogus",
            "v".repeat(43).as_str(),
            LOOPBACK_REDIRECT,
        )
        .await
        .assert_oauth_error(400, "invalid_grant");

    let traces = server.oauth.admin().connection_traces();
    let by_agent = traces
        .iter()
        .find(|t| t.user_agent.as_deref() == Some(agent))
        .expect("steps before registration are grouped by user agent");
    let kinds: Vec<_> = by_agent.steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            StepKind::Challenge,
            StepKind::ResourceMetadata,
            StepKind::ServerMetadata
        ]
    );
    assert_eq!(
        by_agent.steps[0]
            .error
            .as_ref()
            .map(|(code, _)| code.as_str()),
        None,
        "a plain challenge names no error"
    );

    let client = traces
        .iter()
        .find(|t| t.client_id.as_deref() == Some(&client_id))
        .expect("a trace for the client");
    let kinds: Vec<_> = client.steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            StepKind::Registration,
            StepKind::Authorize,
            StepKind::Approval,
            StepKind::CodeExchange,
            StepKind::FirstMcpCall,
            StepKind::Refresh,
            StepKind::CodeExchange,
        ],
        "one first call, however many calls"
    );
    let failed = client.steps.last().unwrap();
    assert_eq!(failed.error.as_ref().unwrap().0, "invalid_grant");
    assert!(client.steps[..6].iter().all(|s| s.error.is_none()));

    let diagnosis = client.diagnosis().unwrap();
    assert!(diagnosis.contains("invalid_grant"), "{diagnosis}");

    // "OAuth completes, then silence": tokens issued, no MCP request ever arrives.
    let (silent, _) = server.connected_client().await;
    let traces = server.oauth.admin().connection_traces();
    let silent = traces
        .iter()
        .find(|t| t.client_id.as_deref() == Some(&silent))
        .unwrap();
    assert!(silent.diagnosis().unwrap().contains("no MCP request"));

    // Nothing secret is kept.
    let recorded = format!("{traces:?}");
    for secret in [access, refresh, "mcp_ac_bogus"] {
        assert!(!recorded.contains(secret), "the doctor recorded a secret");
    }

    let session = sign_in(&server).await;
    let page = console_page(&server, Some(&session.cookie)).await;
    assert!(page.contains("Exchanged the authorization code for tokens"));
    assert!(page.contains("step-failed"));
    assert!(page.contains("class=\"diagnosis"));
    assert!(page.contains(agent));
}

/// Revokes a grant (as the owner would, from another instance) just after the token endpoint has
/// written a new refresh token in it: the race a revocation marker closes.
#[derive(Default)]
struct RevokesMidIssue {
    minted: std::sync::Mutex<Vec<(TokenKind, TokenHash)>>,
}

#[async_trait]
impl StoreHooks for RevokesMidIssue {
    async fn after_insert(
        &self,
        store: &MemoryStore,
        record: &TokenRecord,
    ) -> Result<(), StoreError> {
        let in_refresh = {
            let mut minted = self.minted.lock().unwrap();
            let in_refresh = record.kind == TokenKind::RefreshToken
                && minted.iter().any(|(k, _)| *k == TokenKind::RefreshToken);
            if matches!(
                record.kind,
                TokenKind::AccessToken | TokenKind::RefreshToken
            ) {
                minted.push((record.kind, record.hash));
            }
            in_refresh
        };
        if in_refresh {
            // What `McpOAuth::revoke_grant` does, racing the refresh.
            let grant = &record.grant_id;
            let marker = TokenRecord {
                kind: TokenKind::GrantRevoked,
                hash: TokenHash::of(&grant.0),
                grant_id: GrantId(format!("{}.revoked", grant.0)),
                expires_at: UnixTime::now().plus(3600),
                payload: Vec::new(),
            };
            TokenStore::insert(store, marker).await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn tokens_minted_while_a_revocation_runs_are_taken_back() {
    let memory = MemoryStore::new();
    let tokens = Arc::new(Hooked {
        store: memory.clone(),
        hooks: RevokesMidIssue::default(),
    });
    let oauth = Stores::of(memory.clone())
        .apply(McpOAuth::builder(config()))
        .token_store(tokens.clone())
        .build()
        .unwrap();
    let server = TestServer::serving(oauth, Stores::of(memory.clone()), mcp_routes());
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, issued) = server.connected_client().await;

    server
        .refresh(&client_id, issued["refresh_token"].as_str().unwrap())
        .await
        .assert_oauth_error(400, "invalid_grant");
    let minted = tokens.hooks.minted.lock().unwrap().clone();
    assert_eq!(
        minted.len(),
        4,
        "the code exchange's pair and the refresh's pair"
    );
    for (kind, hash) in &minted[2..] {
        assert_eq!(
            TokenStore::get(&memory, *kind, hash).await.unwrap(),
            None,
            "a {kind:?} minted during the revocation was taken back"
        );
    }
    assert!(server.oauth.admin().grants().await.unwrap().is_empty());
}

/// A page request for the console with `?query`.
async fn console_page_at(server: &TestServer, session: &Session, query: &str) -> String {
    let request = Request::get(format!("/oauth/console?{query}"))
        .header(header::COOKIE, &session.cookie)
        .body(Body::empty())
        .unwrap();
    let reply = server.send(request).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.text()
}

#[tokio::test]
async fn the_console_pages_its_clients_and_removes_the_never_approved_in_bulk() {
    const FLOOD: usize = 120;
    let mut config = config();
    config.rate_limits.enabled = false;
    let server = TestServer::with_config(config).await;
    server.register_passkey(SETUP_TOKEN).await;
    let (connected, tokens) = server.connected_client().await;
    for n in 0..FLOOD {
        server
            .client_id_for(json!({
                "redirect_uris": [LOOPBACK_REDIRECT],
                "token_endpoint_auth_method": "none",
                "client_name": format!("flood {n}"),
            }))
            .await;
    }
    let session = sign_in(&server).await;

    // 122 clients (the flood, the connected one, the pre-registered one), 50 a page, those
    // holding access first.
    let first = console_page(&server, Some(&session.cookie)).await;
    assert_eq!(first.matches("class=\"client-entry\"").count(), 50);
    assert!(first.contains("Page 1 of 3"), "{first}");
    let connected_at = first
        .find(&connected)
        .expect("the connected client is on page 1");
    assert!(
        connected_at < first.find("flood ").unwrap(),
        "clients holding access come before the never-approved"
    );
    assert!(first.contains(&format!("Remove {FLOOD} never-approved clients")));
    let last = console_page_at(&server, &session, "clients=3").await;
    assert_eq!(last.matches("class=\"client-entry\"").count(), 22);
    assert!(last.contains("Never approved"));
    // Nonsense asks for the first page; past the end, the last.
    let odd = console_page_at(&server, &session, "clients=zero").await;
    assert!(odd.contains("Page 1 of 3"));
    let beyond = console_page_at(&server, &session, "clients=99").await;
    assert!(beyond.contains("Page 3 of 3"));

    // The bulk removal is a console operation like the others: session, CSRF, same origin.
    let path = "/oauth/console/clients/remove-unapproved";
    console_post(&server, None, None, path, json!({}))
        .await
        .assert_oauth_error(401, "login_required");
    console_post(&server, Some(&session), Some(""), path, json!({}))
        .await
        .assert_oauth_error(403, "invalid_request");
    let cross_site = server
        .send(
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ORIGIN, "https://evil.example")
                .header(header::COOKIE, &session.cookie)
                .header("x-csrf-token", &session.csrf)
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    assert_eq!(
        server.oauth.admin().clients().await.unwrap().len(),
        FLOOD + 2
    );

    let reply = console_post(&server, Some(&session), None, path, json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["removed"], FLOOD);
    let after = console_page(&server, Some(&session.cookie)).await;
    assert_eq!(after.matches("class=\"client-entry\"").count(), 2);
    assert!(!after.contains("remove-unapproved") && !after.contains("clients-pager"));
    // The approved client keeps working; the Rust API finds nothing more to remove.
    let refreshed = server
        .refresh(&connected, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    assert_eq!(
        server
            .oauth
            .admin()
            .remove_unapproved_clients()
            .await
            .unwrap(),
        0
    );
}

/// The sign counter of the owner's one passkey, as stored.
async fn stored_counter(server: &TestServer) -> u64 {
    let passkeys = server.stores.passkeys.list().await.unwrap();
    serde_json::to_value(&passkeys[0].passkey).unwrap()["cred"]["counter"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rename_racing_approvals_is_kept_and_the_counter_never_goes_back() {
    const APPROVALS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryStore::new();
    let stores = Stores {
        tokens: Arc::new(memory.clone()),
        clients: Arc::new(memory),
        passkeys: Arc::new(
            mcp_oauth::PasskeyFileStore::open(dir.path().join("passkeys.json")).unwrap(),
        ),
    };
    let server = TestServer::on(stores, config(), mcp_routes());
    server.register_passkey(SETUP_TOKEN).await;
    let session = sign_in_with(&server, &server.key).await;
    let credential_id = server.stores.passkeys.list().await.unwrap()[0]
        .credential_id
        .clone();
    let signed_in_at = stored_counter(&server).await;

    // Approvals signed one after another (counters rising), sent all at once with a rename.
    let client_id = server.register_public_client().await;
    let mut approvals = Vec::new();
    for _ in 0..APPROVALS {
        let request_id = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
        let challenge = server
            .post_json("/authorize/challenge", &json!({ "request_id": request_id }))
            .await
            .json();
        let assertion = server.assert_with(&server.key, &challenge).await;
        approvals.push(json!({ "request_id": request_id, "ceremony_id": challenge["ceremony_id"], "credential": assertion }));
    }
    let rename = console_post(
        &server,
        Some(&session),
        None,
        "/oauth/console/passkeys/rename",
        json!({ "credential_id": credential_id, "label": "Renamed mid-approval" }),
    );
    let approve = futures::future::join_all(
        approvals
            .iter()
            .map(|body| server.post_json("/authorize/approve", body)),
    );
    let (renamed, approved) = tokio::join!(rename, approve);
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text());
    for reply in approved {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }

    let passkeys = server.stores.passkeys.list().await.unwrap();
    assert_eq!(
        passkeys[0].label, "Renamed mid-approval",
        "the rename is kept"
    );
    assert_eq!(
        stored_counter(&server).await,
        signed_in_at + APPROVALS as u64,
        "the counter is the highest signed, never an earlier one written last"
    );
}
