//! Machine clients: the `client_credentials` grant (RFC 6749 §4.4, MCP SEP-1046) for the clients
//! the configuration names, authenticated by a signed assertion (`private_key_jwt`) or a secret.
//! Everyone else is refused `unauthorized_client`; a machine's token says on whose authority it
//! acts, so an MCP handler cannot take it for the owner's approval.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;
use mcp_oauth::{AuditEvent, Error, MachineClient, McpOAuth, OAuthConfig, TokenInfo, TokenSubject};
use serde_json::{Value, json};

use crate::common::jose::{self, JWT_BEARER, TestKey, claims};
use crate::common::*;
use crate::console::{console_page, console_post, sign_in};
use mcp_oauth::console::{Registration, StepKind};

const MACHINE_ID: &str = "nightly-report";
const MACHINE_SECRET: &str = "machine-secret-0123456789abcdef";
const SIGNING_ONLY_ID: &str = "deploy-bot";

/// The MCP stand-in: echoes who called and on whose authority.
fn routes() -> Router {
    Router::new().route(
        "/mcp",
        any(|caller: TokenInfo| async move {
            axum::Json(json!({
                "client_id": caller.client_id,
                "scopes": caller.scopes,
                "machine": caller.subject == TokenSubject::Machine,
                "approved_by_owner": caller.is_approved_by_owner(),
            }))
        }),
    )
}

/// A server with two machine clients: `nightly-report` with a secret and keys, `deploy-bot`
/// with keys only.
fn machine_config(key: &TestKey) -> OAuthConfig {
    let mut config = config();
    config.scopes = vec!["mcp".into(), "reports:read".into(), "admin".into()];
    let mut report =
        MachineClient::with_secret(MACHINE_ID, MACHINE_SECRET, ["mcp", "reports:read"]);
    report.jwks = Some(key.jwks().to_string());
    let deploy = MachineClient::with_jwks(SIGNING_ONLY_ID, key.jwks().to_string(), ["mcp"]);
    config.machine_clients = vec![report, deploy];
    config
}

async fn machine_server(key: &TestKey) -> TestServer {
    TestServer::with_routes(machine_config(key), routes()).await
}

fn signed<'a>(assertion: &'a str, fields: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = fields.to_vec();
    pairs.push(("client_assertion_type", JWT_BEARER));
    pairs.push(("client_assertion", assertion));
    pairs
}

async fn with_secret(
    server: &TestServer,
    client_id: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> Reply {
    let mut fields = vec![("grant_type", "client_credentials")];
    fields.extend_from_slice(extra);
    server
        .post_form(
            "/token",
            &form(&fields),
            &[("authorization", &basic(client_id, secret))],
        )
        .await
}

async fn with_assertion(
    server: &TestServer,
    key: &TestKey,
    client_id: &str,
    extra: &[(&str, &str)],
) -> Reply {
    let assertion = key.sign(&claims(client_id, jose::now()));
    let mut fields = vec![("grant_type", "client_credentials")];
    fields.extend_from_slice(extra);
    server
        .post_form("/token", &form(&signed(&assertion, &fields)), &[])
        .await
}

#[track_caller]
fn assert_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.json()["error"], code, "{}", reply.text());
    assert_eq!(
        reply
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
}

/// A machine's token works on `/mcp`, marked as a machine's, and has no refresh token.
async fn assert_machine_token(server: &TestServer, reply: &Reply, client_id: &str, scope: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let tokens = reply.json();
    assert!(
        tokens.get("refresh_token").is_none(),
        "client_credentials must not issue a refresh token (RFC 6749 §4.4.3): {tokens}"
    );
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], scope);
    let call = server.mcp(Some(&access_token(&tokens))).await;
    assert_eq!(call.status, StatusCode::OK, "{}", call.text());
    let caller = call.json();
    assert_eq!(caller["client_id"], client_id);
    assert_eq!(caller["machine"], true, "{caller}");
    assert_eq!(caller["approved_by_owner"], false, "{caller}");
}

#[tokio::test]
async fn a_machine_client_gets_a_token_with_its_secret_or_an_assertion_and_no_refresh_token() {
    let key = TestKey::rsa("machine-2026");
    let server = machine_server(&key).await;

    let reply = with_secret(
        &server,
        MACHINE_ID,
        MACHINE_SECRET,
        &[("resource", RESOURCE)],
    )
    .await;
    assert_machine_token(&server, &reply, MACHINE_ID, "mcp reports:read").await;

    // client_secret_post works as well as Basic.
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "client_credentials"),
                ("client_id", MACHINE_ID),
                ("client_secret", MACHINE_SECRET),
            ]),
            &[],
        )
        .await;
    assert_machine_token(&server, &reply, MACHINE_ID, "mcp reports:read").await;

    let reply = with_assertion(&server, &key, MACHINE_ID, &[("scope", "reports:read")]).await;
    assert_machine_token(&server, &reply, MACHINE_ID, "reports:read").await;

    let reply = with_assertion(&server, &key, SIGNING_ONLY_ID, &[]).await;
    assert_machine_token(&server, &reply, SIGNING_ONLY_ID, "mcp").await;

    // It revokes its own token (RFC 7009) with its credentials, like any client.
    let token = access_token(&reply.json());
    let assertion = key.sign(&claims(SIGNING_ONLY_ID, jose::now()));
    let revoked = server
        .post_form(
            "/revoke",
            &form(&signed(&assertion, &[("token", &token)])),
            &[],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    server
        .mcp(Some(&token))
        .await
        .assert_oauth_error(401, "invalid_token");
}

#[tokio::test]
async fn an_owners_token_is_marked_as_approved_by_the_owner() {
    let key = TestKey::ec("k");
    let server = machine_server(&key).await;
    server.register_passkey(SETUP_TOKEN).await;
    let (_, tokens) = server.connected_client().await;
    let caller = server.mcp(Some(&access_token(&tokens))).await.json();
    assert_eq!(caller["machine"], false, "{caller}");
    assert_eq!(caller["approved_by_owner"], true, "{caller}");
}

#[tokio::test]
async fn clients_not_configured_as_machines_are_unauthorized_client() {
    let key = TestKey::ec("k");
    let server = machine_server(&key).await;
    server.register_passkey(SETUP_TOKEN).await;

    // The pre-registered client, authenticated with its secret.
    let reply = with_secret(&server, CLIENT_ID, CLIENT_SECRET, &[]).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");

    // A dynamically registered public client, and a confidential one with its secret.
    let public = server.register_public_client().await;
    let reply = server
        .post_form(
            "/token",
            &form(&[("grant_type", "client_credentials"), ("client_id", &public)]),
            &[],
        )
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");
    let confidential = server
        .register_client(json!({
            "redirect_uris": [LOOPBACK_REDIRECT],
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code", "refresh_token"],
            "client_name": "Wants to be a machine",
        }))
        .await;
    let id = confidential["client_id"].as_str().unwrap();
    let secret = confidential["client_secret"].as_str().unwrap();
    let reply = with_secret(&server, id, secret, &[]).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");
}

#[cfg(feature = "cimd")]
#[tokio::test]
async fn a_metadata_document_client_is_unauthorized_client() {
    use axum::routing::get;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client_id = format!("http://127.0.0.1:{port}/client.json");
    let document = json!({
        "client_id": client_id,
        "client_name": "Document client",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    let app = Router::new().route(
        "/client.json",
        get(move || {
            let document = document.clone();
            async move { axum::Json(document) }
        }),
    );
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let key = TestKey::ec("k");
    let mut config = machine_config(&key);
    config.cimd_allow_loopback_http_for_testing = true;
    config.cimd_allowed_ports = vec![443, port];
    let server = TestServer::with_routes(config, routes()).await;
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
            ]),
            &[],
        )
        .await;
    task.abort();
    assert_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");
}

#[tokio::test]
async fn wrong_credentials_are_invalid_client_and_spend_the_budget() {
    let key = TestKey::ec("k");
    let mut config = machine_config(&key);
    config.rate_limits.failures.max_failures = 3;
    let server = TestServer::with_routes(config, routes()).await;

    let wrong = with_secret(&server, MACHINE_ID, "not-the-machine-secret", &[]).await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_client");

    // An assertion signed by a foreign key under the machine's kid.
    let forger = TestKey::ec("k");
    let forged = with_assertion(&server, &forger, MACHINE_ID, &[]).await;
    assert_error(&forged, StatusCode::UNAUTHORIZED, "invalid_client");

    // A signing-only machine client sending a secret: no downgrade.
    let downgrade = with_secret(&server, SIGNING_ONLY_ID, MACHINE_SECRET, &[]).await;
    assert_error(&downgrade, StatusCode::UNAUTHORIZED, "invalid_client");

    // Three failures for `nightly-report`: its budget is spent, and even the right secret is 429.
    let wrong = with_secret(&server, MACHINE_ID, "another-wrong-secret", &[]).await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_client");
    let right = with_secret(&server, MACHINE_ID, MACHINE_SECRET, &[]).await;
    assert_eq!(
        right.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        right.text()
    );
}

#[tokio::test]
async fn scope_beyond_the_machines_list_is_invalid_scope_and_a_foreign_resource_invalid_target() {
    let key = TestKey::ec("k");
    let server = machine_server(&key).await;

    // `admin` is one of the server's scopes, but not one this machine may have.
    let reply = with_secret(
        &server,
        MACHINE_ID,
        MACHINE_SECRET,
        &[("scope", "mcp admin")],
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_scope");
    let reply = with_assertion(&server, &key, SIGNING_ONLY_ID, &[("scope", "reports:read")]).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_scope");
    let reply = with_secret(&server, MACHINE_ID, MACHINE_SECRET, &[("scope", "unknown")]).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_scope");

    let reply = with_secret(
        &server,
        MACHINE_ID,
        MACHINE_SECRET,
        &[("resource", "https://elsewhere.example/mcp")],
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_target");
}

#[tokio::test]
async fn a_machine_client_cannot_use_the_owners_grants() {
    let key = TestKey::ec("k");
    let server = machine_server(&key).await;
    server.register_passkey(SETUP_TOKEN).await;

    // It has no redirect URI, so no consent page is ever shown for it.
    let (_, challenge) = pkce();
    let refused = server
        .authorize(&authorization_query(
            MACHINE_ID,
            LOOPBACK_REDIRECT,
            &challenge,
        ))
        .await;
    assert!(refused.is_err(), "a machine client got a consent page");

    // Nor may it redeem a code or refresh a token.
    let reply = with_secret(&server, MACHINE_ID, MACHINE_SECRET, &[]).await;
    let tokens: Value = reply.json();
    let refresh = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["access_token"].as_str().unwrap()),
            ]),
            &[("authorization", &basic(MACHINE_ID, MACHINE_SECRET))],
        )
        .await;
    assert_error(&refresh, StatusCode::BAD_REQUEST, "unauthorized_client");
}

#[tokio::test]
async fn grant_types_supported_lists_client_credentials_only_with_a_machine_client() {
    let plain = TestServer::new().await;
    let metadata = plain
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(
        metadata["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );

    let key = TestKey::ec("k");
    let server = machine_server(&key).await;
    let metadata = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(
        metadata["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
}

#[tokio::test]
async fn the_audit_log_and_the_connection_doctor_say_a_machine_got_a_token() {
    let events: Arc<Mutex<Vec<AuditEvent>>> = Arc::default();
    let sink = Arc::clone(&events);
    let key = TestKey::ed("k");
    let stores = Stores::memory();
    let oauth = stores
        .apply(McpOAuth::builder(machine_config(&key)))
        .on_audit(move |event| sink.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();
    let server = TestServer::serving(oauth, stores, routes());

    let reply = with_assertion(&server, &key, SIGNING_ONLY_ID, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let refused = with_secret(&server, MACHINE_ID, MACHINE_SECRET, &[("scope", "admin")]).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "invalid_scope");

    let events = events.lock().unwrap();
    let issued: Vec<_> = events
        .iter()
        .filter(|e| e.name() == "machine_token_issued")
        .collect();
    assert_eq!(issued.len(), 1, "{events:?}");
    let AuditEvent::MachineTokenIssued {
        client_id, scopes, ..
    } = issued[0]
    else {
        panic!("{issued:?}");
    };
    assert_eq!(
        (client_id.as_str(), scopes.as_slice()),
        (SIGNING_ONLY_ID, &["mcp".to_owned()][..])
    );
    assert!(!format!("{events:?}").contains(MACHINE_SECRET));

    let traces = server.oauth.admin().connection_traces();
    let steps = |id: &str| -> Vec<(StepKind, Option<String>)> {
        traces
            .iter()
            .filter(|t| t.client_id.as_deref() == Some(id))
            .flat_map(|t| t.steps.iter())
            .map(|s| (s.kind, s.error.as_ref().map(|(code, _)| code.clone())))
            .collect()
    };
    assert_eq!(steps(SIGNING_ONLY_ID), vec![(StepKind::MachineToken, None)]);
    assert_eq!(
        steps(MACHINE_ID),
        vec![(StepKind::MachineToken, Some("invalid_scope".to_owned()))]
    );
}

#[tokio::test]
async fn a_machine_the_configuration_no_longer_names_loses_its_tokens() {
    let key = TestKey::ec("k");
    let stores = Stores::memory();
    let server = TestServer::on(stores.clone(), machine_config(&key), routes());
    let reply = with_secret(&server, MACHINE_ID, MACHINE_SECRET, &[]).await;
    let token = access_token(&reply.json());
    assert_eq!(server.mcp(Some(&token)).await.status, StatusCode::OK);

    // Restarted on the same store, without the machine clients.
    let restarted = TestServer::on(stores, config(), routes());
    assert_eq!(
        restarted.mcp(Some(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_machine_clients_keys_must_be_public_and_usable() {
    let key = TestKey::ec("k");
    let mut private = key.jwk();
    private["d"] = json!("c2VjcmV0");
    for jwks in [
        json!({ "keys": [private] }).to_string(),
        json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0" }] }).to_string(),
        json!({ "keys": [] }).to_string(),
        "not json".to_owned(),
    ] {
        let mut config = config();
        config.machine_clients = vec![MachineClient::with_jwks("ci", jwks.clone(), ["mcp"])];
        let error = McpOAuth::builder(config).build().unwrap_err();
        let Error::InvalidConfig { field, reason } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(*field, "machine_clients", "{jwks}");
        assert!(reason.contains("\"ci\""), "{reason}");
    }
}

#[tokio::test]
async fn the_owner_sees_machine_clients_with_their_live_tokens_and_revokes_them() {
    let key = TestKey::ec("k");
    let server = machine_server(&key).await;
    server.register_passkey(SETUP_TOKEN).await;
    let reply = with_secret(&server, MACHINE_ID, MACHINE_SECRET, &[]).await;
    let first = access_token(&reply.json());
    let reply = with_assertion(&server, &key, MACHINE_ID, &[("scope", "reports:read")]).await;
    let second = access_token(&reply.json());
    let (_, owners) = server.connected_client().await;

    let admin = server.oauth.admin();
    let clients = admin.clients().await.unwrap();
    let listed = |id: &str| clients.iter().find(|c| c.client_id == id).cloned();
    let machine = listed(MACHINE_ID).expect("the machine client is listed");
    assert_eq!(machine.registration, Registration::Machine);
    assert_eq!(machine.grants, 2, "one per live token");
    let idle = listed(SIGNING_ONLY_ID).expect("a machine without tokens is listed too");
    assert_eq!((idle.registration, idle.grants), (Registration::Machine, 0));

    let grants = admin.grants().await.unwrap();
    let machine_grants: Vec<_> = grants
        .iter()
        .filter(|g| g.client_id == MACHINE_ID)
        .collect();
    assert_eq!(machine_grants.len(), 2);
    assert!(
        machine_grants
            .iter()
            .all(|g| g.subject == TokenSubject::Machine
                && g.registration == Registration::Machine
                && g.refresh_expires_at.is_none())
    );
    assert!(
        grants
            .iter()
            .filter(|g| g.client_id != MACHINE_ID)
            .all(|g| g.subject == TokenSubject::Owner)
    );
    let second_grant = machine_grants
        .iter()
        .find(|g| g.scopes == ["reports:read"])
        .unwrap()
        .grant_id
        .clone();

    let session = sign_in(&server).await;
    let page = console_page(&server, Some(&session.cookie)).await;
    assert!(page.contains(MACHINE_ID), "the console lists the machine");
    assert!(page.contains("Machine client"), "and says what it is");
    assert!(page.contains(&format!("data-grant-id=\"{second_grant}\"")));

    let reply = console_post(
        &server,
        Some(&session),
        None,
        "/oauth/console/grants/revoke",
        json!({ "grant_id": second_grant.0 }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    server
        .mcp(Some(&second))
        .await
        .assert_oauth_error(401, "invalid_token");
    assert_eq!(server.mcp(Some(&first)).await.status, StatusCode::OK);
    assert_eq!(
        server.mcp(Some(&access_token(&owners))).await.status,
        StatusCode::OK
    );

    // It lives in the configuration: deleting it is refused, and it keeps working.
    let reply = console_post(
        &server,
        Some(&session),
        None,
        "/oauth/console/clients/delete",
        json!({ "client_id": MACHINE_ID }),
    )
    .await;
    reply.assert_oauth_error(409, "conflict");
    assert_eq!(server.mcp(Some(&first)).await.status, StatusCode::OK);
    let reply = with_secret(&server, MACHINE_ID, MACHINE_SECRET, &[]).await;
    assert_machine_token(&server, &reply, MACHINE_ID, "mcp reports:read").await;
}

/// Two instances on one store: a machine's token from one works on the other, marked a
/// machine's; the other lists it and its revocation there holds at the first.
async fn machine_tokens_are_shared_and_revoked_across_instances(stores: Stores) {
    let key = TestKey::rsa("shared");
    let first = TestServer::on(stores.clone(), machine_config(&key), routes());
    let second = TestServer::on(stores, machine_config(&key), routes());

    let reply = with_assertion(&first, &key, MACHINE_ID, &[("resource", RESOURCE)]).await;
    assert_machine_token(&second, &reply, MACHINE_ID, "mcp reports:read").await;
    let token = access_token(&reply.json());

    let admin = second.oauth.admin();
    let grants: Vec<_> = admin
        .grants()
        .await
        .unwrap()
        .into_iter()
        .filter(|g| g.client_id == MACHINE_ID)
        .collect();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].subject, TokenSubject::Machine);
    admin.revoke_grant(&grants[0].grant_id).await.unwrap();
    first
        .mcp(Some(&token))
        .await
        .assert_oauth_error(401, "invalid_token");
}

#[tokio::test]
async fn machine_tokens_are_shared_and_revoked_across_instances_on_memory() {
    machine_tokens_are_shared_and_revoked_across_instances(Stores::memory()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_tokens_are_shared_and_revoked_across_instances_on_sqlite() {
    use mcp_oauth::backends::sqlite::SqliteStore;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    machine_tokens_are_shared_and_revoked_across_instances(Stores::of(store)).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_tokens_are_shared_and_revoked_across_instances_on_redis() {
    use mcp_oauth::backends::redis::RedisStore;

    let Some(url) = redis_url() else { return };
    let prefix = format!("mcp_oauth_machine_{:016x}:", rand::random::<u64>());
    let store = RedisStore::connect(&url).await.unwrap().with_prefix(prefix);
    machine_tokens_are_shared_and_revoked_across_instances(Stores::of(store)).await;
}
