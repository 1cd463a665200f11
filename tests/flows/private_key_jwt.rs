//! `private_key_jwt` (RFC 7523): ChatGPT's metadata document, which offers no other method, end
//! to end; every refusal of a bad assertion, each naming the check it failed; key rotation; key
//! sets that cannot be used; single use of `jti` across instances on a shared store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use mcp_oauth::console::StepKind;

use crate::common::jose::{self, JWT_BEARER, TestKey, claims};
use crate::common::*;

const CHATGPT_REDIRECT: &str = "https://chatgpt.com/connector/oauth/c0nn3ct0r";

/// A client's host on 127.0.0.1: its metadata documents and its JWK set, which a test may
/// replace (rotation); counts the requests for each path.
struct ClientHost {
    base: String,
    state: Arc<HostState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct HostState {
    documents: Mutex<HashMap<String, Value>>,
    jwks: Mutex<Value>,
    hits: Mutex<HashMap<String, usize>>,
}

impl Drop for ClientHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ClientHost {
    async fn start(jwks: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(HostState::default());
        *state.jwks.lock().unwrap() = jwks;
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

    /// Serve `document` at `/{name}`, with its `client_id` set to that URL; the client id.
    fn publish(&self, name: &str, mut document: Value) -> String {
        let id = self.url(name);
        document["client_id"] = json!(id);
        self.state
            .documents
            .lock()
            .unwrap()
            .insert(name.to_owned(), document);
        id
    }

    fn rotate(&self, jwks: Value) {
        *self.state.jwks.lock().unwrap() = jwks;
    }

    fn hits(&self, name: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

async fn serve(State(state): State<Arc<HostState>>, Path(name): Path<String>) -> Response {
    *state.hits.lock().unwrap().entry(name.clone()).or_default() += 1;
    let json_reply = |value: &Value| {
        (
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response()
    };
    match name.as_str() {
        "jwks.json" => {
            let jwks = state.jwks.lock().unwrap().clone();
            json_reply(&jwks)
        }
        "jwks-stall.json" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::NO_CONTENT.into_response()
        }
        "jwks-down.json" => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        // Re-review: the set, or 503 once a test rotates it to null (the client's host is down).
        "jwks-flaky.json" => {
            let jwks = state.jwks.lock().unwrap().clone();
            if jwks.is_null() {
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            } else {
                json_reply(&jwks)
            }
        }
        // Re-review: the same set, answered after a second (a slow but healthy host).
        "jwks-slow.json" => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let jwks = state.jwks.lock().unwrap().clone();
            json_reply(&jwks)
        }
        // Review 21: the same set, marked not to be cached.
        "jwks-nostore.json" => {
            let jwks = state.jwks.lock().unwrap().clone();
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                jwks.to_string(),
            )
                .into_response()
        }
        _ => match state.documents.lock().unwrap().get(&name) {
            Some(document) => json_reply(document),
            None => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

/// ChatGPT's document as the issue quotes it: `private_key_jwt` alone, RS256, keys at a URL.
fn chatgpt(jwks_uri: &str) -> Value {
    json!({
        "client_uri": "https://chatgpt.com/",
        "redirect_uris": [CHATGPT_REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "ChatGPT",
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "RS256",
        "jwks_uri": jwks_uri,
    })
}

fn cimd_config(port: u16) -> mcp_oauth::OAuthConfig {
    let mut config = config();
    config.cimd_allow_loopback_http_for_testing = true;
    config.cimd_allowed_ports = vec![443, port];
    config
}

/// A server with the owner's passkey, fetching from `host` through the testing switch.
async fn server_for(host: &ClientHost) -> TestServer {
    let server = TestServer::with_config(cimd_config(host.port())).await;
    let registered = server.register_passkey(SETUP_TOKEN).await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.text());
    server
}

/// `/token` (`refresh_token` grant, a made-up token) with these extra fields: the client is
/// authenticated before the grant is looked at, so a good assertion gets `invalid_grant` (400)
/// and a bad one `invalid_client` (401).
async fn token_with(server: &TestServer, fields: &[(&str, &str)]) -> Reply {
    let mut pairs = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", "not-a-refresh-token"),
    ];
    pairs.extend_from_slice(fields);
    server.post_form("/token", &form(&pairs), &[]).await
}

async fn token_with_assertion(server: &TestServer, assertion: &str) -> Reply {
    token_with(
        server,
        &[
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ],
    )
    .await
}

#[track_caller]
fn assert_refused(reply: &Reply, named: &str) {
    reply.assert_oauth_error(401, "invalid_client");
    let description = reply.json()["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        description.contains(named),
        "expected {named:?} in {description:?}"
    );
}

async fn exchange_code(
    server: &TestServer,
    client_id: &str,
    code: &str,
    verifier: &str,
    assertion: Option<String>,
) -> Reply {
    let mut fields = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", verifier),
        ("client_id", client_id),
        ("redirect_uri", CHATGPT_REDIRECT),
        ("resource", RESOURCE),
    ];
    if let Some(assertion) = &assertion {
        fields.push(("client_assertion_type", JWT_BEARER));
        fields.push(("client_assertion", assertion));
    }
    server.post_form("/token", &form(&fields), &[]).await
}

async fn refresh_signed(server: &TestServer, token: String, assertion: String) -> Reply {
    let body = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &token),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", &assertion),
    ]);
    server.post_form("/token", &body, &[]).await
}

#[tokio::test]
async fn chatgpt_connects_refreshes_and_revokes_with_rs256_assertions() {
    let key = TestKey::rsa("chatgpt-2026");
    let host = ClientHost::start(key.jwks()).await;
    let client_id = host.publish("client.json", chatgpt(&host.url("jwks.json")));
    let server = server_for(&host).await;

    let metadata = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    for field in [
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        let methods = metadata[field].as_array().unwrap();
        assert!(methods.contains(&json!("private_key_jwt")), "{field}");
        assert!(methods.contains(&json!("none")), "{field}");
    }
    let algorithms = metadata["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    for alg in ["RS256", "PS256", "ES256", "EdDSA"] {
        assert!(algorithms.contains(&json!(alg)), "{alg}");
    }
    assert!(!algorithms.contains(&json!("HS256")));

    let (code, verifier) = server.code_for(&client_id, CHATGPT_REDIRECT).await;
    let exchange =
        |assertion: Option<String>| exchange_code(&server, &client_id, &code, &verifier, assertion);

    // No downgrade to `none`: the document registered private_key_jwt alone.
    let without = exchange(None).await;
    assert_refused(&without, "must authenticate with a client assertion");

    let tokens = exchange(Some(key.sign(&claims(&client_id, jose::now())))).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let tokens = tokens.json();
    let access = access_token(&tokens);
    let call = server.mcp(Some(&access)).await;
    assert_eq!(call.status, StatusCode::OK, "{}", call.text());
    assert_eq!(call.json()["client_id"], client_id.as_str());

    let refresh_assertion = key.sign(&claims(&client_id, jose::now()));
    let refresh = |token: String, assertion: String| refresh_signed(&server, token, assertion);
    let refreshed = refresh(refresh_token(&tokens), refresh_assertion.clone()).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    let refreshed = refreshed.json();
    let access = access_token(&refreshed);
    assert_eq!(server.mcp(Some(&access)).await.status, StatusCode::OK);

    // The same assertion twice: its jti was spent by the refresh.
    let replayed = refresh(refresh_token(&refreshed), refresh_assertion).await;
    assert_refused(&replayed, "jti was used before");

    // Revocation authenticates the client the same way.
    let unsigned = server
        .post_form(
            "/revoke",
            &form(&[("token", &access), ("client_id", &client_id)]),
            &[],
        )
        .await;
    assert_refused(&unsigned, "must authenticate with a client assertion");
    let revoked = server
        .post_form(
            "/revoke",
            &form(&[
                ("token", &access),
                ("client_assertion_type", JWT_BEARER),
                (
                    "client_assertion",
                    &key.sign(&claims(&client_id, jose::now())),
                ),
            ]),
            &[],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    assert_eq!(
        server.mcp(Some(&access)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // One fetch of the document and of the key set served every step.
    assert_eq!(host.hits("client.json"), 1);
    assert_eq!(host.hits("jwks.json"), 1);
}

#[tokio::test]
async fn a_document_offering_none_as_well_works_with_either() {
    let key = TestKey::rsa("k1");
    let host = ClientHost::start(key.jwks()).await;
    let mut document = chatgpt(&host.url("jwks.json"));
    document["token_endpoint_auth_methods_supported"] = json!(["private_key_jwt", "none"]);
    let client_id = host.publish("both.json", document);
    let server = server_for(&host).await;

    let signed = token_with_assertion(&server, &key.sign(&claims(&client_id, jose::now()))).await;
    signed.assert_oauth_error(400, "invalid_grant");
    let public = token_with(&server, &[("client_id", &client_id)]).await;
    public.assert_oauth_error(400, "invalid_grant");
    // Offering `none` does not make a bad signature acceptable.
    let forged = TestKey::rsa("k1").sign(&claims(&client_id, jose::now()));
    assert_refused(
        &token_with_assertion(&server, &forged).await,
        "signature does not verify",
    );
}

#[tokio::test]
async fn every_bad_assertion_is_refused_naming_the_check() {
    let key = TestKey::rsa("k1");
    let host = ClientHost::start(key.jwks()).await;
    let id = host.publish("client.json", chatgpt(&host.url("jwks.json")));
    let server = server_for(&host).await;
    let now = jose::now();
    let with = |changes: Value| {
        let mut claims = claims(&id, now);
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    };
    let public_jwk = key.jwk().to_string();
    let modulus = key.jwk()["n"].as_str().unwrap().to_owned();

    for (what, assertion, named) in [
        (
            "a foreign key with the client's kid",
            TestKey::rsa("k1").sign(&claims(&id, now)),
            "signature does not verify",
        ),
        (
            "alg none",
            jose::unsigned("k1", &claims(&id, now)),
            "alg none is refused",
        ),
        (
            "HS256 with the public JWK as the secret",
            jose::hs256(public_jwk.as_bytes(), "k1", &claims(&id, now)),
            "HS256 is not allowed",
        ),
        (
            "HS256 with the modulus as the secret",
            jose::hs256(modulus.as_bytes(), "k1", &claims(&id, now)),
            "HS256 is not allowed",
        ),
        (
            "PS256 where the client registered RS256",
            key.sign_as("PS256", Some("k1"), &claims(&id, now)),
            "not the one the client registered",
        ),
        (
            "another audience",
            key.sign(&with(json!({ "aud": "https://other.example/token" }))),
            "aud",
        ),
        (
            "no audience",
            key.sign(&with(json!({ "aud": null }))),
            "aud",
        ),
        (
            "another subject",
            key.sign(&with(json!({ "sub": "someone-else" }))),
            "sub is not the client_id",
        ),
        (
            "expired",
            key.sign(&with(json!({ "exp": now - 120, "iat": now - 180 }))),
            "expired",
        ),
        (
            "exp too far ahead",
            key.sign(&with(json!({ "exp": now + 3600 }))),
            "seconds ahead",
        ),
        ("no exp", key.sign(&with(json!({ "exp": null }))), "no exp"),
        (
            "not valid yet",
            key.sign(&with(json!({ "nbf": now + 120 }))),
            "nbf",
        ),
        (
            "issued in the future",
            key.sign(&with(json!({ "iat": now + 120 }))),
            "iat",
        ),
        ("no jti", key.sign(&with(json!({ "jti": null }))), "jti"),
        (
            "a kid the set does not hold (already refetched)",
            key.sign_as("RS256", Some("k2"), &claims(&id, now)),
            "does not hold",
        ),
        (
            "the forger's own key embedded in the header (jwk, jku, x5u)",
            {
                let forger = TestKey::rsa("k1");
                let header = json!({
                    "alg": "RS256", "kid": "k1", "jwk": forger.jwk(),
                    "jku": "https://evil.example/jwks.json", "x5u": "https://evil.example/c.pem",
                });
                forger.sign_with_header(&header, &claims(&id, now))
            },
            "signature does not verify",
        ),
        ("not a JWT", "not-a-jwt".to_owned(), "no readable iss"),
    ] {
        let reply = token_with_assertion(&server, &assertion).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            reply.text()
        );
        assert_refused(&reply, named);
    }

    // `iss` names the client whose keys are used: another issuer with this client's id in
    // `client_id` disagrees with it.
    let other_iss = key.sign(&with(json!({ "iss": "https://evil.example/client.json" })));
    token_with(
        &server,
        &[
            ("client_id", &id),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &other_iss),
        ],
    )
    .await
    .assert_oauth_error(400, "invalid_request");
    let good = key.sign(&claims(&id, now));
    for (what, extra) in [
        ("a client secret as well", ("client_secret", "s3cret")),
        (
            "a different client_id",
            ("client_id", "https://x.example/c"),
        ),
    ] {
        let reply = token_with(
            &server,
            &[
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &good),
                extra,
            ],
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}");
        reply.assert_oauth_error(400, "invalid_request");
    }
    let basic_too = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &good),
            ]),
            &[("authorization", &basic(&id, "s3cret"))],
        )
        .await;
    basic_too.assert_oauth_error(400, "invalid_request");
    let wrong_type = token_with(
        &server,
        &[
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
            ("client_assertion", &good),
        ],
    )
    .await;
    assert_refused(&wrong_type, "client_assertion_type must be");

    // None of these spent the good assertion: it is still accepted once.
    token_with_assertion(&server, &good)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn an_assertion_for_a_client_registered_with_another_method_is_refused() {
    let host = ClientHost::start(json!({ "keys": [] })).await;
    let server = server_for(&host).await;
    let key = TestKey::rsa("k1");
    // The pre-registered client authenticates with its secret.
    let assertion = key.sign(&claims(CLIENT_ID, jose::now()));
    assert_refused(
        &token_with_assertion(&server, &assertion).await,
        "not registered for private_key_jwt",
    );
    // A metadata document client that publishes no keys is public.
    let public = host.publish(
        "public.json",
        json!({
            "client_name": "Public",
            "redirect_uris": [LOOPBACK_REDIRECT],
            "token_endpoint_auth_method": "none",
        }),
    );
    let assertion = key.sign(&claims(&public, jose::now()));
    assert_refused(
        &token_with_assertion(&server, &assertion).await,
        "not registered for private_key_jwt",
    );
}

#[tokio::test]
async fn every_allowed_algorithm_verifies() {
    let keys = [TestKey::rsa("rsa"), TestKey::ec("ec"), TestKey::ed("ed")];
    let jwks = json!({ "keys": keys.iter().map(TestKey::jwk).collect::<Vec<_>>() });
    let host = ClientHost::start(jwks.clone()).await;
    let mut document = chatgpt(&host.url("jwks.json"));
    document
        .as_object_mut()
        .unwrap()
        .remove("token_endpoint_auth_signing_alg");
    let id = host.publish("any-alg.json", document);
    let mut inline = chatgpt("unused");
    inline.as_object_mut().unwrap().remove("jwks_uri");
    inline
        .as_object_mut()
        .unwrap()
        .remove("token_endpoint_auth_signing_alg");
    inline["jwks"] = jwks;
    let inline_id = host.publish("inline.json", inline);
    let server = server_for(&host).await;
    for client in [&id, &inline_id] {
        for (key, alg) in [
            (&keys[0], "RS256"),
            (&keys[0], "PS256"),
            (&keys[1], "ES256"),
            (&keys[2], "EdDSA"),
        ] {
            let assertion = key.sign_as(alg, Some(&key.kid), &claims(client, jose::now()));
            let reply = token_with_assertion(&server, &assertion).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{client} {alg}: {}",
                reply.text()
            );
            reply.assert_oauth_error(400, "invalid_grant");
        }
    }
    // A key used with an algorithm of another family.
    let mixed = keys[1].sign_as("ES256", Some("rsa"), &claims(&id, jose::now()));
    assert_refused(
        &token_with_assertion(&server, &mixed).await,
        "signature does not verify",
    );
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_an_unknown_kid_earns_one_refetch_a_minute() {
    let old = TestKey::rsa("2026-01");
    let host = ClientHost::start(old.jwks()).await;
    let id = host.publish("client.json", chatgpt(&host.url("jwks.json")));
    let server = server_for(&host).await;

    token_with_assertion(&server, &old.sign(&claims(&id, jose::now())))
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(host.hits("jwks.json"), 1);

    let new = TestKey::rsa("2026-02");
    host.rotate(new.jwks());
    token_with_assertion(&server, &new.sign(&claims(&id, jose::now())))
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(host.hits("jwks.json"), 2, "one refetch for the new kid");

    // One key id the set lacks, again and again (fewer times than the failure budget, which
    // answers 429 before anything is fetched): one refetch for it, then none for a minute.
    // Each other made-up id would earn its own, as many as the sender's budget allows.
    for _ in 0..10 {
        let made_up = new.sign_as("RS256", Some("made-up"), &claims(&id, jose::now()));
        assert_refused(
            &token_with_assertion(&server, &made_up).await,
            "does not hold",
        );
    }
    assert_eq!(
        host.hits("jwks.json"),
        3,
        "an unknown kid earned one refetch, not one per request"
    );
    // The rotated-out key is gone from the set now in use.
    assert_refused(
        &token_with_assertion(&server, &old.sign(&claims(&id, jose::now()))).await,
        "does not hold",
    );
}

/// What the owner's connection doctor recorded for a client id.
fn doctor_notes(server: &TestServer, client_id: &str) -> String {
    server
        .oauth
        .admin()
        .connection_traces()
        .iter()
        .filter(|t| t.client_id.as_deref() == Some(client_id))
        .flat_map(|t| t.steps.iter())
        .filter_map(|s| s.error.as_ref().map(|(_, description)| description.clone()))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The connection doctor's steps for a client id.
fn doctor_steps(server: &TestServer, client_id: &str) -> Vec<StepKind> {
    server
        .oauth
        .admin()
        .connection_traces()
        .iter()
        .filter(|t| t.client_id.as_deref() == Some(client_id))
        .flat_map(|t| t.steps.iter().map(|s| s.kind))
        .collect()
}

#[tokio::test]
async fn documents_declaring_private_key_jwt_without_usable_keys_are_refused_at_authorize() {
    let host = ClientHost::start(json!({ "keys": [] })).await;
    let server = server_for(&host).await;
    let mut keyless = chatgpt("unused");
    keyless.as_object_mut().unwrap().remove("jwks_uri");
    for (name, document, detail) in [
        ("keyless.json", keyless, "publishes no keys"),
        (
            "private-address.json",
            chatgpt("https://10.0.0.7/jwks.json"),
            "jwks_uri is not acceptable",
        ),
        (
            "private-members.json",
            {
                let mut document = chatgpt("unused");
                document.as_object_mut().unwrap().remove("jwks_uri");
                let mut jwk = TestKey::ec("k").jwk();
                jwk["d"] = json!("c2VjcmV0");
                document["jwks"] = json!({ "keys": [jwk] });
                document
            },
            "private key material",
        ),
    ] {
        let id = host.publish(name, document);
        let (_, challenge) = pkce();
        let page = server
            .get(&format!(
                "/authorize?{}&resource={}",
                authorization_query(&id, CHATGPT_REDIRECT, &challenge),
                enc(RESOURCE)
            ))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{name}");
        assert!(page.header("location").is_none(), "{name}");
        assert!(
            page.text().contains("is invalid"),
            "{name}: {}",
            page.text()
        );
        assert!(
            doctor_notes(&server, &id).contains(detail),
            "{name}: {}",
            doctor_notes(&server, &id)
        );
        let assertion = TestKey::rsa("k").sign(&claims(&id, jose::now()));
        token_with_assertion(&server, &assertion)
            .await
            .assert_oauth_error(401, "invalid_client");
    }
}

#[tokio::test]
async fn a_key_set_the_client_broke_is_401_and_one_that_cannot_be_fetched_is_503() {
    let key = TestKey::rsa("k1");
    let host = ClientHost::start(json!({})).await;
    let server = server_for(&host).await;

    let mut private = key.jwks();
    private["keys"][0]["d"] = json!("c2VjcmV0");
    let mut oversize = key.jwks();
    oversize["padding"] = json!("x".repeat(20 * 1024));
    for (jwks, what) in [
        (private, "private members"),
        (oversize, "oversize"),
        (
            json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0" }] }),
            "symmetric",
        ),
    ] {
        host.rotate(jwks);
        let id = host.publish(
            &format!("{}.json", what.replace(' ', "-")),
            chatgpt(&host.url("jwks.json")),
        );
        let reply = token_with_assertion(&server, &key.sign(&claims(&id, jose::now()))).await;
        assert_refused(&reply, "could not be fetched or is invalid");
        // The owner's connection doctor says why; the client heard a category.
        let notes = doctor_notes(&server, &id);
        assert!(notes.contains("JWK set"), "{what}: {notes}");
        assert!(
            doctor_steps(&server, &id).contains(&StepKind::KeySet),
            "{what}: recorded under its own step"
        );
    }

    for name in ["jwks-down.json", "jwks-stall.json"] {
        let id = host.publish(&format!("client-{name}"), chatgpt(&host.url(name)));
        let reply = token_with_assertion(&server, &key.sign(&claims(&id, jose::now()))).await;
        reply.assert_oauth_error(503, "temporarily_unavailable");
    }
}

/// Two instances on one store: an assertion accepted by one is refused by the other.
async fn a_jti_is_single_use_across_instances(stores: Stores) {
    let key = TestKey::rsa("k1");
    let host = ClientHost::start(key.jwks()).await;
    let id = host.publish("client.json", chatgpt(&host.url("jwks.json")));
    let a = TestServer::on(stores.clone(), cimd_config(host.port()), mcp_routes());
    let b = TestServer::on(stores, cimd_config(host.port()), mcp_routes());
    let assertion = key.sign(&claims(&id, jose::now()));
    token_with_assertion(&a, &assertion)
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_refused(
        &token_with_assertion(&b, &assertion).await,
        "jti was used before",
    );
    assert_refused(
        &token_with_assertion(&a, &assertion).await,
        "jti was used before",
    );
}

#[tokio::test]
async fn a_jti_is_single_use_across_instances_on_memory() {
    a_jti_is_single_use_across_instances(Stores::memory()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_jti_is_single_use_across_instances_on_sqlite() {
    use mcp_oauth::backends::sqlite::SqliteStore;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
    let stores = Stores::of(SqliteStore::connect(&url).await.unwrap());
    a_jti_is_single_use_across_instances(stores).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_jti_is_single_use_across_instances_on_redis() {
    use mcp_oauth::backends::redis::RedisStore;
    let Some(url) = redis_url() else { return };
    let prefix = format!("mcp_oauth_jti_{:016x}:", rand::random::<u64>());
    let store = RedisStore::connect(&url).await.unwrap().with_prefix(prefix);
    a_jti_is_single_use_across_instances(Stores::of(store)).await;
}

#[tokio::test]
async fn assertion_failures_spend_the_clients_failure_budget() {
    let key = TestKey::rsa("k1");
    let host = ClientHost::start(key.jwks()).await;
    let id = host.publish("client.json", chatgpt(&host.url("jwks.json")));
    let server = server_for(&host).await;
    let forger = TestKey::rsa("k1");
    let mut statuses = Vec::new();
    for _ in 0..21 {
        let reply = token_with_assertion(&server, &forger.sign(&claims(&id, jose::now()))).await;
        statuses.push(reply.status.as_u16());
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[20], 429, "{statuses:?}");
    // Spent from this address: the genuine key is held back too, so the guesser learns nothing.
    let genuine = token_with_assertion(&server, &key.sign(&claims(&id, jose::now()))).await;
    assert_eq!(genuine.status, StatusCode::TOO_MANY_REQUESTS);
}

/// Every time check is the server's clock's: a test moves it instead of waiting. The `jti` of a
/// used assertion is remembered for as long as the assertion would be accepted, and no longer
/// matters after.
#[tokio::test]
async fn the_servers_clock_judges_every_time_claim() {
    let key = TestKey::rsa("k1");
    let host = ClientHost::start(key.jwks()).await;
    let id = host.publish("client.json", chatgpt(&host.url("jwks.json")));
    let clock = mcp_oauth::ManualClock::new();
    let server = TestServer::with_clock(cimd_config(host.port()), &clock);
    let start = clock.now().0;

    let assertion = key.sign(&claims(&id, start));
    token_with_assertion(&server, &assertion)
        .await
        .assert_oauth_error(400, "invalid_grant");
    clock.advance(Duration::from_secs(80));
    assert_refused(
        &token_with_assertion(&server, &assertion).await,
        "jti was used before",
    );
    clock.advance(Duration::from_secs(20));
    assert_refused(&token_with_assertion(&server, &assertion).await, "expired");

    let early = key.sign(&claims(&id, clock.now().0 + 120));
    assert_refused(&token_with_assertion(&server, &early).await, "iat");
    clock.advance(Duration::from_secs(120));
    token_with_assertion(&server, &early)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

/// The same assertion sent many times at once, to two instances on one store: exactly one is
/// accepted.
async fn concurrent_uses_of_one_assertion_have_one_winner(stores: Stores) {
    let key = TestKey::rsa("k1");
    let host = ClientHost::start(key.jwks()).await;
    let id = host.publish("client.json", chatgpt(&host.url("jwks.json")));
    let a = Arc::new(TestServer::on(
        stores.clone(),
        cimd_config(host.port()),
        mcp_routes(),
    ));
    let b = Arc::new(TestServer::on(
        stores,
        cimd_config(host.port()),
        mcp_routes(),
    ));
    // Warm both caches, so that the uses race on the store and not on the fetches.
    for server in [&a, &b] {
        let warm = key.sign(&claims(&id, jose::now()));
        token_with_assertion(server, &warm)
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
    let assertion = key.sign(&claims(&id, jose::now()));
    let uses = (0..16).map(|i| {
        let server = Arc::clone(if i % 2 == 0 { &a } else { &b });
        let assertion = assertion.clone();
        tokio::spawn(async move { token_with_assertion(&server, &assertion).await.status })
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(uses)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let accepted = statuses
        .iter()
        .filter(|s| **s == StatusCode::BAD_REQUEST)
        .count();
    assert_eq!(accepted, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::BAD_REQUEST || *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uses_of_one_assertion_have_one_winner_on_memory() {
    concurrent_uses_of_one_assertion_have_one_winner(Stores::memory()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uses_of_one_assertion_have_one_winner_on_sqlite() {
    use mcp_oauth::backends::sqlite::SqliteStore;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
    let stores = Stores::of(SqliteStore::connect(&url).await.unwrap());
    concurrent_uses_of_one_assertion_have_one_winner(stores).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uses_of_one_assertion_have_one_winner_on_redis() {
    use mcp_oauth::backends::redis::RedisStore;
    let Some(url) = redis_url() else { return };
    let prefix = format!("mcp_oauth_jti_race_{:016x}:", rand::random::<u64>());
    let store = RedisStore::connect(&url).await.unwrap().with_prefix(prefix);
    concurrent_uses_of_one_assertion_have_one_winner(Stores::of(store)).await;
}

/// A metadata document client of the attacker's own, with its ES256 key inline: anyone can
/// publish one and send accepted assertions. Its key and client id.
fn attackers_own_client(host: &ClientHost) -> (TestKey, String) {
    let key = TestKey::ec("attacker");
    let mut document = chatgpt("unused");
    document.as_object_mut().unwrap().remove("jwks_uri");
    document["token_endpoint_auth_signing_alg"] = json!("ES256");
    document["jwks"] = key.jwks();
    (key, host.publish("attacker.json", document))
}

// ---------------------------------------------------------------------------------------------
// What an outside reader attacked. The first five failed before their fixes (each comment says
// how); the crafted assertions held and are kept as attacks.
// ---------------------------------------------------------------------------------------------

/// A `jwks_uri` that answers something unusable (here a 404) is refused with 401 and spends the
/// failure budget, so one address cannot make the server fetch a URL of its choosing on every
/// request. (Before the fix: 30 × 401, fetched 30 times, never 429.)
#[tokio::test]
async fn a_broken_jwks_uri_is_held_to_the_failure_budget() {
    let host = ClientHost::start(json!({})).await;
    // `missing.json` is not published: the host answers 404 there.
    let id = host.publish("client.json", chatgpt(&host.url("missing.json")));
    let server = server_for(&host).await;
    let key = TestKey::rsa("k1");
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let reply = token_with_assertion(&server, &key.sign(&claims(&id, jose::now()))).await;
        statuses.push(reply.status.as_u16());
    }
    let fetches = host.hits("missing.json");
    assert!(
        statuses.contains(&429),
        "30 refused assertions from one address never reached the failure budget (20): {statuses:?}"
    );
    assert!(
        fetches <= 21,
        "the jwks_uri was fetched {fetches} times for 30 requests"
    );
}

/// A used `jti` stays used on the memory store, whatever else fills it: an attacker with its own
/// metadata document and key sends accepted assertions with later `exp`s until the table of used
/// assertions is full; the victim's marker is never evicted (the table refuses new assertions
/// with 503 instead), so its captured assertion is not accepted a second time. (Before the fix
/// the markers shared the evicting table, and the replay was accepted: 400 `invalid_grant`.)
#[tokio::test]
async fn a_flood_of_own_assertions_cannot_evict_a_used_jti() {
    let victim_key = TestKey::rsa("victim");
    let host = ClientHost::start(victim_key.jwks()).await;
    let victim = host.publish("victim.json", chatgpt(&host.url("jwks.json")));
    // The attacker's own client, keys inline.
    let (attacker_key, attacker) = attackers_own_client(&host);

    let stores = Stores::of(mcp_oauth::backends::memory::MemoryStore::with_capacity(
        32, 100,
    ));
    let server = TestServer::on(stores, cimd_config(host.port()), mcp_routes());

    // The victim uses its assertion once; the attacker captured it (a log, a proxy).
    let captured = victim_key.sign(&claims(&victim, jose::now()));
    token_with_assertion(&server, &captured)
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_refused(
        &token_with_assertion(&server, &captured).await,
        "jti was used before",
    );

    // The attacker spends 40 good assertions of its own (fewer than the auth burst of 60): the
    // table of used assertions (room for 32) fills, and then refuses.
    let mut full = 0;
    for _ in 0..40 {
        let mut own = claims(&attacker, jose::now());
        own["exp"] = json!(jose::now() + 300);
        let reply = token_with_assertion(&server, &attacker_key.sign(&own)).await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            full += 1;
        } else {
            reply.assert_oauth_error(400, "invalid_grant");
        }
    }
    assert!(full > 0, "the table of used assertions filled and refused");

    let replay = token_with_assertion(&server, &captured).await;
    assert_eq!(
        replay.status,
        StatusCode::UNAUTHORIZED,
        "the victim's used assertion was accepted again: {} {}",
        replay.status,
        replay.text()
    );
}

/// At the default memory capacity (100,000 records, 32 shards), an attacker who grinds its own
/// jtis to land where a captured marker's key would put it (the last byte of
/// SHA-256("{client_id}\n{jti}")) fills nothing in particular: shards are picked with a key of
/// the store's own, so 3,200 ground assertions spread over every shard and the used assertion
/// stays used. Rate limits are off to stand for the handful of addresses that would send them.
/// (Before the fix one shard filled, evicted the marker, and the replay was accepted.)
#[tokio::test]
async fn at_default_capacity_ground_jtis_cannot_evict_a_used_jti() {
    use sha2::{Digest, Sha256};
    let victim_key = TestKey::rsa("victim");
    let host = ClientHost::start(victim_key.jwks()).await;
    let victim = host.publish("victim.json", chatgpt(&host.url("jwks.json")));
    let (attacker_key, attacker) = attackers_own_client(&host);

    let mut config = cimd_config(host.port());
    config.rate_limits.enabled = false;
    let server = TestServer::on(Stores::memory(), config, mcp_routes());

    let captured = victim_key.sign(&claims(&victim, jose::now()));
    token_with_assertion(&server, &captured)
        .await
        .assert_oauth_error(400, "invalid_grant");
    let shard =
        |client: &str, jti: &str| Sha256::digest(format!("{client}\n{jti}").as_bytes())[31] & 31;
    let claims_of = |jwt: &str| -> Value {
        let payload = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap()
    };
    let target = shard(&victim, claims_of(&captured)["jti"].as_str().unwrap());

    let mut sent = 0;
    let mut n = 0u64;
    while sent < 3200 {
        n += 1;
        let jti = format!("ground-{n}");
        if shard(&attacker, &jti) != target {
            continue;
        }
        let mut own = claims(&attacker, jose::now());
        own["exp"] = json!(jose::now() + 300);
        own["jti"] = json!(jti);
        token_with_assertion(&server, &attacker_key.sign(&own))
            .await
            .assert_oauth_error(400, "invalid_grant");
        sent += 1;
    }

    let replay = token_with_assertion(&server, &captured).await;
    assert_eq!(
        replay.status,
        StatusCode::UNAUTHORIZED,
        "after {sent} ground assertions the victim's used assertion was accepted again: {}",
        replay.text()
    );
}

/// Review 21, attacks that held: each of these crafted assertions is refused (or, for the
/// duplicate `iss`, bound to the keys of the iss that the verified claims name).
#[tokio::test]
async fn crafted_assertions_are_refused() {
    let victim_key = TestKey::rsa("k1");
    let host = ClientHost::start(victim_key.jwks()).await;
    let victim = host.publish("client.json", chatgpt(&host.url("jwks.json")));
    let attacker_key = TestKey::rsa("a1");
    let mut attacker_doc = chatgpt("unused");
    attacker_doc.as_object_mut().unwrap().remove("jwks_uri");
    attacker_doc["jwks"] = attacker_key.jwks();
    let attacker = host.publish("attacker.json", attacker_doc);
    let mut config = cimd_config(host.port());
    config.rate_limits.enabled = false;
    let server = TestServer::on(Stores::memory(), config, mcp_routes());
    let now = jose::now();
    let aud = format!("{SERVER_URL}/token");

    // A claim sent twice: which iss is meant is never a guess, whichever comes last (the one
    // serde_json would keep) and whoever signed.
    for (jti, first, last) in [("d1", &attacker, &victim), ("d2", &victim, &attacker)] {
        let dup = format!(
            r#"{{"iss":"{first}","iss":"{last}","sub":"{victim}","aud":"{aud}","exp":{},"jti":"{jti}"}}"#,
            now + 60
        );
        let reply = token_with_assertion(
            &server,
            &attacker_key.sign_raw("RS256", r#"{"alg":"RS256","kid":"a1"}"#, &dup),
        )
        .await;
        assert_refused(&reply, "no readable iss");
    }
    // Duplicate alg in the header.
    let good = claims(&attacker, now).to_string();
    let reply = token_with_assertion(
        &server,
        &attacker_key.sign_raw(
            "RS256",
            r#"{"alg":"HS256","alg":"RS256","kid":"a1"}"#,
            &good,
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    // An unknown critical header, and b64 false.
    for header in [
        r#"{"alg":"RS256","kid":"a1","crit":["urn:x"],"urn:x":1}"#,
        r#"{"alg":"RS256","kid":"a1","crit":["b64"],"b64":false}"#,
    ] {
        let jwt = attacker_key.sign_raw("RS256", header, &claims(&attacker, now).to_string());
        let reply = token_with_assertion(&server, &jwt).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{header}: {}",
            reply.text()
        );
    }
    // aud lookalikes, time claims of other types, a jti of the wrong type.
    for (what, change) in [
        (
            "aud with a trailing slash",
            json!({ "aud": format!("{SERVER_URL}/") }),
        ),
        (
            "aud of another path",
            json!({ "aud": format!("{SERVER_URL}/revoke") }),
        ),
        ("aud as an object", json!({ "aud": { "x": aud } })),
        ("exp as a string", json!({ "exp": (now + 60).to_string() })),
        ("exp negative", json!({ "exp": -1 })),
        ("exp i64::MAX", json!({ "exp": i64::MAX })),
        ("exp 1e300", json!({ "exp": 1e300 })),
        ("nbf huge", json!({ "nbf": u64::MAX })),
        ("jti a number", json!({ "jti": 7 })),
        (
            "iss with a trailing space",
            json!({ "iss": format!("{attacker} ") }),
        ),
    ] {
        let mut c = claims(&attacker, now);
        for (k, v) in change.as_object().unwrap() {
            c[k] = v.clone();
        }
        let reply = token_with_assertion(&server, &attacker_key.sign(&c)).await;
        assert_eq!(reply.status.as_u16(), 401, "{what}: {}", reply.text());
    }
    // Extra segments, JWS JSON serialization.
    let jwt = attacker_key.sign(&claims(&attacker, now));
    for bad in [format!("{jwt}.x"), format!("x.{jwt}"), {
        let parts: Vec<&str> = jwt.split('.').collect();
        json!({ "protected": parts[0], "payload": parts[1], "signature": parts[2] }).to_string()
    }] {
        let reply = token_with_assertion(&server, &bad).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{bad}: {}",
            reply.text()
        );
    }
    // A jti used by one client does not burn another's (per-client jti spaces).
    let mut a = claims(&attacker, now);
    a["jti"] = json!("shared");
    let mut v = claims(&victim, now);
    v["jti"] = json!("shared");
    token_with_assertion(&server, &attacker_key.sign(&a))
        .await
        .assert_oauth_error(400, "invalid_grant");
    token_with_assertion(&server, &victim_key.sign(&v))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

/// A stranger naming made-up key ids for a client cannot spend the refetch the client's real new
/// key needs after a rotation: refetches are limited per client and key id. (Before the fix one
/// request with a made-up kid blocked the rotation for a minute: the client's new-key assertions
/// got 401 × 20, then 429.)
#[tokio::test]
async fn nobody_can_spend_the_refetch_a_clients_new_key_needs() {
    let old = TestKey::rsa("2026-01");
    let host = ClientHost::start(old.jwks()).await;
    let id = host.publish("client.json", chatgpt(&host.url("jwks.json")));
    let mut server = server_for(&host).await;
    let victim_address = server.peer;
    token_with_assertion(&server, &old.sign(&claims(&id, jose::now())))
        .await
        .assert_oauth_error(400, "invalid_grant");

    // The attacker, from its own address, with its own key.
    server.peer = "198.51.100.7:5555".parse().unwrap();
    let forged = TestKey::rsa("x").sign_as("RS256", Some("made-up"), &claims(&id, jose::now()));
    assert_refused(
        &token_with_assertion(&server, &forged).await,
        "does not hold",
    );
    server.peer = victim_address;
    assert_eq!(host.hits("jwks.json"), 2);

    // The victim rotates within the minute.
    let new = TestKey::rsa("2026-02");
    host.rotate(new.jwks());
    let mut statuses = Vec::new();
    for _ in 0..21 {
        let reply = token_with_assertion(&server, &new.sign(&claims(&id, jose::now()))).await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(
        statuses[0], 400,
        "the rotated client's first assertion was refused (after the attacker's request): {statuses:?}"
    );
}

/// A key set served with `Cache-Control: no-store` is read once per request (a refetch right
/// after would read the same), and not at all once the sender's budget is spent. (Before the fix:
/// 50 fetches for 30 requests, some past the budget.)
#[tokio::test]
async fn an_uncacheable_key_set_is_fetched_at_most_once_per_request_and_never_past_the_budget() {
    let key = TestKey::rsa("k1");
    let host = ClientHost::start(key.jwks()).await;
    let id = host.publish("client.json", chatgpt(&host.url("jwks-nostore.json")));
    let mut server = server_for(&host).await;
    token_with_assertion(&server, &key.sign(&claims(&id, jose::now())))
        .await
        .assert_oauth_error(400, "invalid_grant");
    let before = host.hits("jwks-nostore.json");
    server.peer = "198.51.100.7:5555".parse().unwrap();
    let forger = TestKey::rsa("x");
    let mut statuses = Vec::new();
    for i in 0..30 {
        let made_up = forger.sign_as(
            "RS256",
            Some(&format!("made-up-{i}")),
            &claims(&id, jose::now()),
        );
        statuses.push(
            token_with_assertion(&server, &made_up)
                .await
                .status
                .as_u16(),
        );
    }
    let fetches = host.hits("jwks-nostore.json") - before;
    let refused = statuses.iter().filter(|&&status| status == 401).count();
    assert_eq!(refused, 20, "{statuses:?}");
    assert!(
        fetches <= refused,
        "30 made-up kids fetched the victim's JWK set {fetches} times: {statuses:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// What a second outside reader attacked in the fixes above; each failed before its own fix.
// ---------------------------------------------------------------------------------------------

/// A genuine client sending more good assertions at once than its failure budget (20) while its
/// key set is being fetched (slow but healthy host) gets no 429: the budget is checked before the
/// fetch, not held across it. (With a unit held across the fetch: 5 × 429 in 20 of 20 runs.)
/// Some may get 503 when the fetch slots for one host are busy, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn good_assertions_waiting_on_a_slow_key_fetch_are_never_429() {
    let key = TestKey::rsa("k1");
    let host = ClientHost::start(key.jwks()).await;
    let id = host.publish("client.json", chatgpt(&host.url("jwks-slow.json")));
    let server = Arc::new(server_for(&host).await);
    let uses = (0..25).map(|_| {
        let server = Arc::clone(&server);
        let assertion = key.sign(&claims(&id, jose::now()));
        tokio::spawn(async move { token_with_assertion(&server, &assertion).await.status })
    });
    let statuses: Vec<u16> = futures::future::join_all(uses)
        .await
        .into_iter()
        .map(|s| s.unwrap().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|&s| s == 400 || s == 503),
        "good assertions, none failed a check, yet: {statuses:?}"
    );
    assert!(statuses.contains(&400), "{statuses:?}");
}

/// A `kid` longer than 256 bytes is refused before anything is fetched or remembered (the refetch
/// limiter is keyed by client and key id; before the bound each 45 KB made-up id earned a refetch
/// and a 45 KB key in the limiter).
#[tokio::test]
async fn a_kid_longer_than_256_bytes_is_refused_before_any_fetch() {
    let key = TestKey::rsa("k1");
    let host = ClientHost::start(key.jwks()).await;
    let id = host.publish("client.json", chatgpt(&host.url("jwks.json")));
    let mut server = server_for(&host).await;
    token_with_assertion(&server, &key.sign(&claims(&id, jose::now())))
        .await
        .assert_oauth_error(400, "invalid_grant");
    let before = host.hits("jwks.json");
    server.peer = "198.51.100.7:5555".parse().unwrap();
    let forger = TestKey::rsa("x");
    for i in 0..3 {
        let kid = format!("{i}{}", "K".repeat(45_000));
        let forged = forger.sign_as("RS256", Some(&kid), &claims(&id, jose::now()));
        assert!(forged.len() > 60_000, "{}", forged.len());
        let reply = token_with_assertion(&server, &forged).await;
        assert_refused(&reply, "kid is longer than 256 bytes");
        assert!(!reply.text().contains("KKKK"), "the kid is not echoed back");
    }
    let refetches = host.hits("jwks.json") - before;
    assert_eq!(
        refetches, 0,
        "each 45 KB made-up kid earned a refetch, so a 45 KB limiter key was stored for it"
    );
}

/// While a client's key host answers 5xx, made-up key ids from one address are still held to the
/// failure budget (20): a failed refetch for a key id the assertion named spends a unit. (Before:
/// 100 × 503, 100 fetches, never 429.)
#[tokio::test]
async fn made_up_kids_while_the_key_host_is_down_are_held_to_the_budget() {
    let key = TestKey::rsa("k1");
    let host = ClientHost::start(key.jwks()).await;
    let id = host.publish("client.json", chatgpt(&host.url("jwks-flaky.json")));
    let mut config = cimd_config(host.port());
    config.rate_limits.auth = mcp_oauth::RateLimit::new(10_000, 10_000);
    let mut server = TestServer::with_config(config).await;
    token_with_assertion(&server, &key.sign(&claims(&id, jose::now())))
        .await
        .assert_oauth_error(400, "invalid_grant");
    host.rotate(Value::Null);
    let before = host.hits("jwks-flaky.json");
    server.peer = "198.51.100.7:5555".parse().unwrap();
    let forger = TestKey::rsa("x");
    let mut statuses = Vec::new();
    for i in 0..100 {
        let made_up = forger.sign_as(
            "RS256",
            Some(&format!("made-up-{i}")),
            &claims(&id, jose::now()),
        );
        statuses.push(
            token_with_assertion(&server, &made_up)
                .await
                .status
                .as_u16(),
        );
    }
    let fetches = host.hits("jwks-flaky.json") - before;
    assert!(
        fetches <= 20,
        "one address made the server fetch the client's key host {fetches} times: {statuses:?}"
    );
}
