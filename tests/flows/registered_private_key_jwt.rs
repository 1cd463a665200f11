//! Dynamic registration of `private_key_jwt` clients (RFC 7591 with RFC 7523): the keys registered
//! inline (`jwks`) or at a URL (`jwks_uri`), no secret issued, a signed assertion the only way in
//! at every endpoint; each refusal at registration and at the token endpoint; a registration that
//! outlives a restart and is shared between instances.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::jose::{self, JWT_BEARER, TestKey, claims};
use crate::common::*;

/// A registration asking for `private_key_jwt` with RS256 and `keys` (`jwks` or `jwks_uri`).
fn signing_client(keys: &Value) -> Value {
    let mut metadata = json!({
        "redirect_uris": [LOOPBACK_REDIRECT],
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "client_name": "Signing Client",
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "RS256",
    });
    for (name, value) in keys.as_object().unwrap() {
        metadata[name] = value.clone();
    }
    metadata
}

/// `fields` with a fresh assertion by `key` for `client_id`.
fn signed(key: &TestKey, client_id: &str, fields: &[(&str, &str)]) -> String {
    let assertion = key.sign(&claims(client_id, jose::now()));
    let mut pairs = fields.to_vec();
    pairs.push(("client_assertion_type", JWT_BEARER));
    pairs.push(("client_assertion", &assertion));
    form(&pairs)
}

#[track_caller]
fn assert_refused(reply: &Reply, named: &str) {
    reply.assert_oauth_error(401, "invalid_client");
    let description = reply.json()["error_description"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        description.contains(named),
        "expected {named:?} in {description:?}"
    );
}

/// Register `metadata` and check what the response says: the method, no secret.
async fn register_signing(server: &TestServer, metadata: Value) -> Value {
    let registration = server.register_client(metadata).await;
    assert_eq!(
        registration["token_endpoint_auth_method"],
        "private_key_jwt"
    );
    assert_eq!(registration["token_endpoint_auth_signing_alg"], "RS256");
    assert!(
        registration.get("client_secret").is_none(),
        "{registration}"
    );
    assert!(registration.get("client_secret_expires_at").is_none());
    // A registered client never gets client_credentials.
    assert_eq!(
        registration["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    registration
}

/// The code approved with the owner's passkey, exchanged, refreshed and revoked, each step signed;
/// each unsigned try refused first, and the code still good after it.
async fn connect_refresh_and_revoke(server: &TestServer, key: &TestKey, client_id: &str) {
    let (code, verifier) = server.code_for(client_id, LOOPBACK_REDIRECT).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.as_str()),
        ("redirect_uri", LOOPBACK_REDIRECT),
        ("resource", RESOURCE),
        ("client_id", client_id),
    ];
    let unsigned = server.post_form("/token", &form(&exchange), &[]).await;
    assert_refused(&unsigned, "must authenticate with a client assertion");
    let tokens = server
        .post_form("/token", &signed(key, client_id, &exchange), &[])
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let tokens = tokens.json();
    let call = server.mcp(Some(&access_token(&tokens))).await;
    assert_eq!(call.status, StatusCode::OK, "{}", call.text());
    assert_eq!(call.json()["client_id"], client_id);

    let refresh = refresh_token(&tokens);
    let refresh_fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    assert_refused(
        &server.refresh(client_id, &refresh).await,
        "must authenticate with a client assertion",
    );
    let refreshed = server
        .post_form("/token", &signed(key, client_id, &refresh_fields), &[])
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    let access = access_token(&refreshed.json());
    assert_eq!(server.mcp(Some(&access)).await.status, StatusCode::OK);

    let revoke_fields = [("token", access.as_str())];
    let mut unsigned = revoke_fields.to_vec();
    unsigned.push(("client_id", client_id));
    assert_refused(
        &server.post_form("/revoke", &form(&unsigned), &[]).await,
        "must authenticate with a client assertion",
    );
    let revoked = server
        .post_form("/revoke", &signed(key, client_id, &revoke_fields), &[])
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    assert_eq!(
        server.mcp(Some(&access)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_client_registered_with_inline_keys_connects_refreshes_and_revokes_by_assertion() {
    let server = TestServer::ready().await;
    let key = TestKey::rsa("dcr-2026");
    let registration =
        register_signing(&server, signing_client(&json!({ "jwks": key.jwks() }))).await;
    let kept = &registration["jwks"]["keys"];
    assert_eq!(kept.as_array().unwrap().len(), 1, "{registration}");
    assert_eq!(kept[0]["kid"], "dcr-2026");
    assert_eq!(kept[0]["n"], key.jwk()["n"]);
    assert!(registration.get("jwks_uri").is_none());
    let client_id = registration["client_id"].as_str().unwrap();
    connect_refresh_and_revoke(&server, &key, client_id).await;
}

/// A JWK set on 127.0.0.1 at `/jwks.json`, counting the fetches.
#[cfg(feature = "cimd")]
struct KeyHost {
    url: String,
    port: u16,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

#[cfg(feature = "cimd")]
impl KeyHost {
    async fn start(jwks: Value) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&fetches);
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://127.0.0.1:{port}/jwks.json"),
            port,
            fetches,
            task,
        }
    }
}

#[cfg(feature = "cimd")]
impl Drop for KeyHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(feature = "cimd")]
#[tokio::test]
async fn a_client_registered_with_a_jwks_uri_connects_refreshes_and_revokes_by_assertion() {
    let key = TestKey::rsa("dcr-uri");
    let host = KeyHost::start(key.jwks()).await;
    let mut config = config();
    config.cimd_allow_loopback_http_for_testing = true;
    config.cimd_allowed_ports = vec![443, host.port];
    let server = TestServer::with_config(config).await;
    server.register_passkey(SETUP_TOKEN).await;
    let registration =
        register_signing(&server, signing_client(&json!({ "jwks_uri": host.url }))).await;
    assert_eq!(registration["jwks_uri"], host.url.as_str());
    assert!(registration.get("jwks").is_none());
    let client_id = registration["client_id"].as_str().unwrap();
    connect_refresh_and_revoke(&server, &key, client_id).await;
    assert_eq!(
        host.fetches.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one fetch of the key set served every step"
    );
}

#[tokio::test]
async fn registration_refuses_bad_private_key_jwt_metadata_saying_why() {
    let server = TestServer::new().await;
    let key = TestKey::rsa("k1");
    let mut private = key.jwk();
    private["d"] = json!("c2VjcmV0LWV4cG9uZW50");
    let seventeen: Vec<Value> = (0..17)
        .map(|i| TestKey::ec(&format!("k{i}")).jwk())
        .collect();
    // Sixteen keys whose text is over the limit: long moduli, as an 8192-bit key would have.
    let oversize: Vec<Value> = (0..16)
        .map(|i| {
            let mut jwk = key.jwk();
            jwk["kid"] = json!(format!("k{i}"));
            jwk["n"] = json!("q".repeat(1_400));
            jwk
        })
        .collect();
    let mut cases = vec![
        (
            json!({ "jwks": key.jwks(), "jwks_uri": "https://keys.example/jwks.json" }),
            "one of jwks and jwks_uri, not both",
        ),
        (
            json!({}),
            "needs the client's public keys: jwks or jwks_uri",
        ),
        (
            json!({ "jwks": { "keys": [private] } }),
            "jwks is refused: the JWK set holds private key material (member d)",
        ),
        (
            json!({ "jwks": { "keys": [{ "kty": "oct", "k": "c2VjcmV0" }] } }),
            "jwks is refused: the JWK set holds a symmetric key (kty oct)",
        ),
        (
            json!({ "jwks": { "keys": seventeen } }),
            "jwks is refused: the JWK set holds more than 16 keys",
        ),
        (
            json!({ "jwks": { "keys": oversize } }),
            "jwks is larger than 16384 bytes",
        ),
        (
            json!({ "jwks": { "keys": [{ "kty": "RSA", "use": "enc", "n": key.jwk()["n"], "e": "AQAB" }] } }),
            "jwks holds no usable public signing key",
        ),
        (
            json!({ "jwks": [key.jwk()] }),
            "the JWK set has no keys list",
        ),
        (
            json!({ "jwks": key.jwks(), "token_endpoint_auth_signing_alg": "none" }),
            "token_endpoint_auth_signing_alg none is not one of RS256, PS256, ES256, EdDSA",
        ),
        (
            json!({ "jwks": key.jwks(), "token_endpoint_auth_signing_alg": "HS256" }),
            "token_endpoint_auth_signing_alg HS256 is not one of",
        ),
        (json!({ "jwks_uri": 7 }), "jwks_uri must be a string"),
    ];
    // Without the fetcher, no jwks_uri is accepted; with it, one held to the document URL rules.
    let uri_refusal = |reason: &'static str| {
        if cfg!(feature = "cimd") {
            reason
        } else {
            "jwks_uri is not accepted here"
        }
    };
    for (uri, reason) in [
        (
            "http://keys.example/jwks.json",
            "jwks_uri is not acceptable: it must use https",
        ),
        (
            "http://127.0.0.1:9999/jwks.json",
            "jwks_uri is not acceptable: it must use https",
        ),
        (
            "https://10.0.0.1/jwks.json",
            "jwks_uri is not acceptable: it points at a private",
        ),
        (
            "https://keys.example:8443/jwks.json",
            "jwks_uri is not acceptable: it names port 8443",
        ),
    ] {
        cases.push((json!({ "jwks_uri": uri }), uri_refusal(reason)));
    }
    for (keys, expected) in cases {
        let metadata = signing_client(&keys);
        let reply = server.post_json("/register", &metadata).await;
        reply.assert_oauth_error(400, "invalid_client_metadata");
        let description = reply.json()["error_description"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            description.contains(expected),
            "{keys}: expected {expected:?} in {description:?}"
        );
    }
    assert!(
        server.stores.clients.list().await.unwrap().is_empty(),
        "a refused registration stores nothing"
    );
}

#[tokio::test]
async fn signing_registrations_are_held_to_the_cap_on_unapproved_clients() {
    let mut config = config();
    config.max_unapproved_clients = 1;
    let server = TestServer::with_config(config).await;
    let key = TestKey::rsa("k1");
    let metadata = signing_client(&json!({ "jwks": key.jwks() }));
    register_signing(&server, metadata.clone()).await;
    let reply = server.post_json("/register", &metadata).await;
    reply.assert_oauth_error(503, "temporarily_unavailable");
    assert_eq!(reply.header("retry-after"), Some("60"));
}

#[tokio::test]
async fn without_metadata_documents_a_jwks_uri_is_refused_and_inline_keys_still_register() {
    let mut config = config();
    config.client_id_metadata_documents = false;
    let server = TestServer::with_config(config).await;
    let key = TestKey::rsa("k1");
    let reply = server
        .post_json(
            "/register",
            &signing_client(&json!({ "jwks_uri": "https://keys.example/jwks.json" })),
        )
        .await;
    reply.assert_oauth_error(400, "invalid_client_metadata");
    assert!(
        reply.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("jwks_uri is not accepted here: this server does not fetch client key sets"),
        "{}",
        reply.text()
    );
    register_signing(&server, signing_client(&json!({ "jwks": key.jwks() }))).await;
}

#[tokio::test]
async fn a_registered_signing_client_gets_in_by_its_assertion_only() {
    // A machine client is configured, so that client_credentials is a grant this server offers.
    let mut config = config();
    config.machine_clients = vec![mcp_oauth::MachineClient::with_secret(
        "ci-bot",
        "ci-bot-secret-0123456789abcdef",
        ["mcp"],
    )];
    let server = TestServer::with_config(config).await;
    let key = TestKey::rsa("k1");
    let client_id = register_signing(&server, signing_client(&json!({ "jwks": key.jwks() }))).await
        ["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = client_id.as_str();
    // The client is authenticated before the grant is looked at: a good assertion gets to
    // `invalid_grant` (400) with this made-up refresh token, a refused one stops at 401.
    let grant = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "not-a-refresh-token"),
    ];
    let with = |extra: &[(&'static str, &str)]| {
        let mut pairs: Vec<(&str, &str)> = grant.to_vec();
        pairs.extend_from_slice(extra);
        form(&pairs)
    };
    let server = &server;
    let token = |body: String| async move { server.post_form("/token", &body, &[]).await };

    assert_refused(
        &token(with(&[("client_id", id)])).await,
        "must authenticate with a client assertion",
    );
    assert_refused(
        &token(with(&[
            ("client_id", id),
            ("client_secret", "a-guessed-secret"),
        ]))
        .await,
        "must authenticate with a client assertion",
    );
    let guessed = basic(id, "a-guessed-secret");
    assert_refused(
        &server
            .post_form("/token", &with(&[]), &[("authorization", &guessed)])
            .await,
        "must authenticate with a client assertion",
    );
    let forged = TestKey::rsa("k1").sign(&claims(id, jose::now()));
    let public_jwk = key.jwk().to_string();
    for (what, assertion, named) in [
        (
            "another key with the same kid",
            forged,
            "signature does not verify",
        ),
        (
            "HS256 with the public key as the secret",
            jose::hs256(public_jwk.as_bytes(), "k1", &claims(id, jose::now())),
            "HS256 is not allowed",
        ),
        (
            "PS256 where RS256 was registered",
            key.sign_as("PS256", Some("k1"), &claims(id, jose::now())),
            "not the one the client registered",
        ),
    ] {
        let reply = token(with(&[
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ]))
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_refused(&reply, named);
    }
    let good = key.sign(&claims(id, jose::now()));
    let assertion = [
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", good.as_str()),
    ];
    token(with(&assertion))
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_refused(&token(with(&assertion)).await, "jti was used before");

    // Never client_credentials, however well it signs: it is no machine client.
    let machine = server
        .post_form(
            "/token",
            &signed(&key, id, &[("grant_type", "client_credentials")]),
            &[],
        )
        .await;
    machine.assert_oauth_error(400, "unauthorized_client");

    // Revocation and introspection: no way in without the assertion, and no introspection with it.
    assert_refused(
        &server
            .post_form("/revoke", &form(&[("token", "x"), ("client_id", id)]), &[])
            .await,
        "must authenticate with a client assertion",
    );
    server
        .post_form("/introspect", &signed(&key, id, &[("token", "x")]), &[])
        .await
        .assert_oauth_error(401, "invalid_client");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_registered_signing_client_survives_a_restart_on_sqlite() {
    use std::sync::Arc;

    use mcp_oauth::backends::sqlite::SqliteStore;
    use tokio::sync::Mutex;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
    let open = || async { Stores::of(SqliteStore::connect(&url).await.unwrap()) };
    let owner = Arc::new(Mutex::new(SoftAuthenticator::new(true)));
    let key = TestKey::rsa("k1");

    let before = TestServer::instance(open().await, Arc::clone(&owner));
    before.register_passkey(SETUP_TOKEN).await;
    let client_id = register_signing(&before, signing_client(&json!({ "jwks": key.jwks() }))).await
        ["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(before);

    let after = TestServer::instance(open().await, owner);
    connect_refresh_and_revoke(&after, &key, &client_id).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_registered_signing_client_is_shared_by_instances_on_redis() {
    use std::sync::Arc;

    use mcp_oauth::backends::redis::RedisStore;
    use tokio::sync::Mutex;

    let Some(url) = redis_url() else { return };
    let prefix = format!("mcp_oauth_dcr_jwt_{:016x}:", rand::random::<u64>());
    let open = || async {
        Stores::of(
            RedisStore::connect(&url)
                .await
                .unwrap()
                .with_prefix(prefix.clone()),
        )
    };
    let owner = Arc::new(Mutex::new(SoftAuthenticator::new(true)));
    let key = TestKey::rsa("k1");
    let a = TestServer::instance(open().await, Arc::clone(&owner));
    let b = TestServer::instance(open().await, owner);
    a.register_passkey(SETUP_TOKEN).await;
    let client_id =
        register_signing(&a, signing_client(&json!({ "jwks": key.jwks() }))).await["client_id"]
            .as_str()
            .unwrap()
            .to_owned();
    connect_refresh_and_revoke(&b, &key, &client_id).await;
    // An assertion one instance accepted, the other refuses.
    let assertion = key.sign(&claims(&client_id, jose::now()));
    let body = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", "not-a-refresh-token"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", &assertion),
    ]);
    b.post_form("/token", &body, &[])
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_refused(
        &a.post_form("/token", &body, &[]).await,
        "jti was used before",
    );
}
