//! Configured clients with their keys at a URL (`client_jwks_uri`, `MachineClient::jwks_uri`):
//! fetched by the metadata documents' SSRF-safe fetcher and cache, so a rotation at the URL is
//! picked up with one refetch and a key host that fails is 503, not 401; the pre-registered
//! client with keys and no secret must sign; every bad URL is a configuration error; and a
//! machine's tokens end when its key URL changes, not when the keys at it rotate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mcp_oauth::{Error, MachineClient, McpOAuth, OAuthConfig};
use serde_json::Value;

use crate::common::jose::{self, JWT_BEARER, TestKey, claims};
use crate::common::*;

const MACHINE_ID: &str = "key-uri-bot";
const REDIRECT: &str = "http://127.0.0.1:4321/callback";

/// A key host on 127.0.0.1: `/jwks.json` and `/jwks-copy.json` serve the current set (which a
/// test may rotate), `/broken.json` answers 500, `/stall.json` never answers in time. Counts the
/// requests for each path.
struct KeyHost {
    base: String,
    state: Arc<HostState>,
    task: tokio::task::JoinHandle<()>,
}

struct HostState {
    jwks: Mutex<Value>,
    hits: Mutex<HashMap<String, usize>>,
}

impl Drop for KeyHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeyHost {
    async fn start(jwks: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(HostState {
            jwks: Mutex::new(jwks),
            hits: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/{name}", get(serve))
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, state, task }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn rotate(&self, jwks: Value) {
        *self.state.jwks.lock().unwrap() = jwks;
    }

    fn hits(&self, name: &str) -> usize {
        let hits = self.state.hits.lock().unwrap();
        hits.get(name).copied().unwrap_or(0)
    }
}

async fn serve(State(state): State<Arc<HostState>>, Path(name): Path<String>) -> Response {
    *state.hits.lock().unwrap().entry(name.clone()).or_default() += 1;
    match name.as_str() {
        "jwks.json" | "jwks-copy.json" => {
            let jwks = state.jwks.lock().unwrap().to_string();
            ([(header::CONTENT_TYPE, "application/json")], jwks).into_response()
        }
        "broken.json" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "stall.json" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The test configuration, fetching from `host` through the testing switch.
fn loopback_config(host: &KeyHost) -> OAuthConfig {
    let mut config = config();
    config.cimd_allow_loopback_http_for_testing = true;
    config.cimd_allowed_ports = vec![443, host.port()];
    config
}

/// With one machine client whose keys are at `jwks_uri`.
fn machine_config(host: &KeyHost, jwks_uri: &str) -> OAuthConfig {
    let mut config = loopback_config(host);
    config.machine_clients = vec![MachineClient::with_jwks_uri(MACHINE_ID, jwks_uri, ["mcp"])];
    config
}

fn signed<'a>(assertion: &'a str, fields: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = fields.to_vec();
    pairs.push(("client_assertion_type", JWT_BEARER));
    pairs.push(("client_assertion", assertion));
    pairs
}

/// `client_credentials` for the machine, with an assertion signed by `key`.
async fn machine_token(server: &TestServer, key: &TestKey) -> Reply {
    let assertion = key.sign(&claims(MACHINE_ID, jose::now()));
    let fields = signed(&assertion, &[("grant_type", "client_credentials")]);
    server.post_form("/token", &form(&fields), &[]).await
}

/// The access token of a successful `client_credentials` reply, checked to work on `/mcp`.
async fn working_token(server: &TestServer, reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let token = access_token(&reply.json());
    let call = server.mcp(Some(&token)).await;
    assert_eq!(call.status, StatusCode::OK, "{}", call.text());
    assert_eq!(call.json()["client_id"], MACHINE_ID);
    token
}

#[tokio::test]
async fn a_machine_with_a_jwks_uri_signs_and_a_rotation_at_the_url_costs_one_refetch() {
    let old = TestKey::rsa("2026-11");
    let host = KeyHost::start(old.jwks()).await;
    let server = TestServer::with_config(machine_config(&host, &host.url("jwks.json"))).await;
    let metadata = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    let methods = metadata["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("private_key_jwt"), "{methods}");

    let before = working_token(&server, &machine_token(&server, &old).await).await;
    machine_token(&server, &old).await;
    assert_eq!(host.hits("jwks.json"), 1, "the set is cached");

    // The machine rotates its key at the URL: the new kid earns one refetch, and is accepted.
    let new = TestKey::ec("2026-12");
    host.rotate(new.jwks());
    working_token(&server, &machine_token(&server, &new).await).await;
    working_token(&server, &machine_token(&server, &new).await).await;
    assert_eq!(host.hits("jwks.json"), 2, "one refetch for the new kid");
    // The token minted under the old key still stands: the configuration did not change.
    assert_eq!(server.mcp(Some(&before)).await.status, StatusCode::OK);
    // The old key is gone from the set in use.
    machine_token(&server, &old)
        .await
        .assert_oauth_error(401, "invalid_client");
}

#[tokio::test]
async fn a_key_host_that_fails_or_stalls_is_503_not_401() {
    let key = TestKey::rsa("k");
    let host = KeyHost::start(key.jwks()).await;
    for name in ["broken.json", "stall.json"] {
        let server = TestServer::with_config(machine_config(&host, &host.url(name))).await;
        let reply = machine_token(&server, &key).await;
        reply.assert_oauth_error(503, "temporarily_unavailable");
        assert_eq!(host.hits(name), 1, "{name}");
    }
}

/// The pre-registered client with its keys at a URL and an empty secret: no secret at all.
async fn signing_only_server(host: &KeyHost) -> TestServer {
    let mut config = loopback_config(host);
    config.client_secret = String::new();
    config.client_jwks_uri = Some(host.url("jwks.json"));
    let server = TestServer::with_config(config).await;
    server.register_passkey(SETUP_TOKEN).await;
    server
}

#[tokio::test]
async fn the_pre_registered_client_with_keys_and_no_secret_signs_every_request() {
    let key = TestKey::rsa("pre-2026");
    let host = KeyHost::start(key.jwks()).await;
    let server = signing_only_server(&host).await;
    let assertion = || key.sign(&claims(CLIENT_ID, jose::now()));

    let (code, verifier) = server.code_for(CLIENT_ID, REDIRECT).await;
    let code_fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.as_str()),
        ("redirect_uri", REDIRECT),
        ("resource", RESOURCE),
    ];
    // Without an assertion the code is not exchanged (and stays usable).
    server
        .post_form("/token", &form(&code_fields), &[])
        .await
        .assert_oauth_error(401, "invalid_client");
    let signed_code = assertion();
    let tokens = server
        .post_form("/token", &form(&signed(&signed_code, &code_fields)), &[])
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let refresh = refresh_token(&tokens.json());

    let refresh_fields = [("grant_type", "refresh_token"), ("refresh_token", &refresh)];
    // A secret, any secret (the empty one too), or none at all: refused, naming the way in.
    for (credentials, headers) in [
        (
            vec![("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)],
            vec![],
        ),
        (vec![], vec![("authorization", basic(CLIENT_ID, ""))]),
        (vec![("client_id", CLIENT_ID)], vec![]),
    ] {
        let mut fields = refresh_fields.to_vec();
        fields.extend(credentials);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = server.post_form("/token", &form(&fields), &headers).await;
        reply.assert_oauth_error(401, "invalid_client");
        let description = reply.json()["error_description"].to_string();
        assert!(description.contains("client assertion"), "{description}");
    }

    let signed_refresh = assertion();
    let refreshed = server
        .post_form(
            "/token",
            &form(&signed(&signed_refresh, &refresh_fields)),
            &[],
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    let access = access_token(&refreshed.json());

    // A resource server configured as this client introspects with an assertion.
    let signed_introspect = assertion();
    let introspected = server
        .post_form(
            "/introspect",
            &form(&signed(&signed_introspect, &[("token", &access)])),
            &[],
        )
        .await;
    assert_eq!(
        introspected.status,
        StatusCode::OK,
        "{}",
        introspected.text()
    );
    assert_eq!(introspected.json()["active"], true);

    server
        .post_form(
            "/revoke",
            &form(&[("token", &access), ("client_id", CLIENT_ID)]),
            &[],
        )
        .await
        .assert_oauth_error(401, "invalid_client");
    assert_eq!(server.mcp(Some(&access)).await.status, StatusCode::OK);
    let signed_revoke = assertion();
    let revoked = server
        .post_form(
            "/revoke",
            &form(&signed(&signed_revoke, &[("token", &access)])),
            &[],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    assert_eq!(
        server.mcp(Some(&access)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// The configuration error for `config`, as (field, reason).
fn config_error(config: OAuthConfig) -> (&'static str, String) {
    match McpOAuth::builder(config).build() {
        Err(Error::InvalidConfig { field, reason }) => (field, reason),
        Err(other) => panic!("expected InvalidConfig, got {other:?}"),
        Ok(_) => panic!("expected InvalidConfig, the layer was built"),
    }
}

#[tokio::test]
async fn every_bad_jwks_uri_is_a_configuration_error_naming_the_field() {
    let key = TestKey::rsa("k");
    let host = KeyHost::start(key.jwks()).await;
    let loopback = host.url("jwks.json");
    let other_port = loopback.replace(&host.port().to_string(), "1");
    let cases: [(&str, OAuthConfig, &str); 6] = [
        (
            "http://keys.example.com/jwks.json",
            loopback_config(&host),
            "https",
        ),
        // Loopback over http only under the testing switch.
        (&loopback, config(), "https"),
        (
            "https://10.0.0.7/jwks.json",
            loopback_config(&host),
            "non-public",
        ),
        ("https://localhost:8080/jwks.json", config(), "this machine"),
        (&other_port, loopback_config(&host), "port"),
        ("not a url", config(), "whitespace"),
    ];
    for (uri, base, expected) in cases {
        let mut pre = base.clone();
        pre.client_jwks_uri = Some(uri.to_owned());
        let (field, reason) = config_error(pre);
        assert_eq!(field, "client_jwks_uri", "{uri}: {reason}");
        assert!(reason.contains(expected), "{uri}: {reason}");

        let mut machine = base;
        machine.machine_clients = vec![MachineClient::with_jwks_uri("ci", uri, ["mcp"])];
        let (field, reason) = config_error(machine);
        assert_eq!(field, "machine_clients", "{uri}: {reason}");
        assert!(
            reason.contains("\"ci\": jwks_uri") && reason.contains(expected),
            "{uri}: {reason}"
        );
    }

    // Keys inline and at a URL at once (RFC 7591 §2).
    let mut both = loopback_config(&host);
    both.client_jwks = Some(key.jwks().to_string());
    both.client_jwks_uri = Some(loopback.clone());
    let (field, reason) = config_error(both);
    assert_eq!(field, "client_jwks_uri");
    assert!(reason.contains("both"), "{reason}");
    let mut both = loopback_config(&host);
    let mut machine = MachineClient::with_jwks_uri("ci", &loopback, ["mcp"]);
    machine.jwks = Some(key.jwks().to_string());
    both.machine_clients = vec![machine];
    let (field, reason) = config_error(both);
    assert_eq!(field, "machine_clients");
    assert!(reason.contains("both"), "{reason}");

    // No secret is allowed only beside keys.
    let mut keyless = config();
    keyless.client_secret = String::new();
    let (field, reason) = config_error(keyless);
    assert_eq!(field, "client_secret");
    assert!(reason.contains("client_jwks_uri"), "{reason}");
}

#[tokio::test]
async fn changing_a_machines_jwks_uri_ends_its_tokens_and_a_rotation_at_it_does_not() {
    let key = TestKey::rsa("k1");
    let host = KeyHost::start(key.jwks()).await;
    let stores = Stores::memory();
    let routes = mcp_routes;
    let first = TestServer::on(
        stores.clone(),
        machine_config(&host, &host.url("jwks.json")),
        routes(),
    );
    let token = working_token(&first, &machine_token(&first, &key).await).await;

    // Another instance on the same store, the same URL, after the keys there rotated: the token
    // stands.
    host.rotate(TestKey::rsa("k2").jwks());
    let same = TestServer::on(
        stores.clone(),
        machine_config(&host, &host.url("jwks.json")),
        routes(),
    );
    assert_eq!(same.mcp(Some(&token)).await.status, StatusCode::OK);

    // The owner moves the machine's keys to another URL (serving the same set): the tokens
    // minted under the old one end, at the instance with the new configuration.
    let moved = TestServer::on(
        stores,
        machine_config(&host, &host.url("jwks-copy.json")),
        routes(),
    );
    moved
        .mcp(Some(&token))
        .await
        .assert_oauth_error(401, "invalid_token");
    let introspected = moved
        .post_form(
            "/introspect",
            &form(&[("token", &token)]),
            &[("authorization", &basic(CLIENT_ID, CLIENT_SECRET))],
        )
        .await;
    assert_eq!(
        introspected.json()["active"],
        false,
        "{}",
        introspected.text()
    );
}
