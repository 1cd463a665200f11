//! Seventh outside review of issue 21 (the key-set outage hold of 00ecc02; each key parsed once
//! and kept with its set, each assertion read once, of 29dd7fb): attacks by HTTP on a real server
//! with a loopback key host. Each test asserts a guarantee as the brief, the code's comments or
//! SECURITY.md state it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use serde_json::{Value, json};

use crate::common::jose::{JWT_BEARER, TestKey, claims, now};
use crate::common::*;

/// A client's host on loopback: its metadata document (`private_key_jwt`, `alg` as given or
/// none) and its key set, cacheable for five minutes, which a test replaces (a rotation).
struct KeyHost {
    base: String,
    jwks: Arc<Mutex<Value>>,
    /// Once set, the key set answers 503 after 300 ms (a host failing slowly: nobody's fault).
    down: Arc<AtomicBool>,
    /// Requests for the key set.
    jwks_hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KeyHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeyHost {
    async fn start(jwks: Value, alg: Option<&str>) -> Self {
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let mut document = json!({
            "client_id": format!("{base}/client.json"),
            "client_name": "Machine",
            "client_uri": "https://client.example/",
            "redirect_uris": ["https://client.example/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": format!("{base}/jwks.json"),
        });
        if let Some(alg) = alg {
            document["token_endpoint_auth_signing_alg"] = json!(alg);
        }
        let jwks = Arc::new(Mutex::new(jwks));
        let down = Arc::new(AtomicBool::new(false));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let (set, is_down, hits) = (Arc::clone(&jwks), Arc::clone(&down), Arc::clone(&jwks_hits));
        let cacheable = |body: String| {
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "max-age=300"),
                ],
                body,
            )
                .into_response()
        };
        let app = Router::new()
            .route(
                "/client.json",
                get(move || {
                    let body = document.to_string();
                    async move { cacheable(body) }
                }),
            )
            .route(
                "/jwks.json",
                get(move || {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let body = set.lock().unwrap().to_string();
                    let down = is_down.load(Ordering::SeqCst);
                    async move {
                        if down {
                            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                            return StatusCode::SERVICE_UNAVAILABLE.into_response();
                        }
                        cacheable(body)
                    }
                }),
            );
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base,
            jwks,
            down,
            jwks_hits,
            task,
        }
    }

    fn client_id(&self) -> String {
        format!("{}/client.json", self.base)
    }

    fn rotate(&self, jwks: Value) {
        *self.jwks.lock().unwrap() = jwks;
    }

    fn server(&self) -> TestServer {
        let port: u16 = self.base.rsplit(':').next().unwrap().parse().unwrap();
        let mut config = config();
        config.cimd_allow_loopback_http_for_testing = true;
        config.cimd_allowed_ports = vec![443, port];
        // The per-address request rate out of the way: only the failure budget is under test.
        config.rate_limits.auth = mcp_oauth::RateLimit::new(10_000, 10_000);
        TestServer::on(Stores::memory(), config, Router::new())
    }
}

/// `/token` with a made-up refresh token, authenticated by `assertion`: a good assertion gets
/// 400 `invalid_grant`, a refused one 401 `invalid_client`.
async fn refresh(server: &TestServer, assertion: &str) -> Reply {
    let body = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", "not-a-refresh-token"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ]);
    server.post_form("/token", &body, &[]).await
}

/// The brief: "after a key set rotates (a new set fetched ...), nothing verifies with the old
/// key". A key the client removed from its set (say, leaked) still verifies after the server has
/// fetched the set without it and keeps that set as the client's: an assertion naming the removed
/// key's id is an unknown kid against the cached set, and the refetch it earns is answered from
/// the refetch for that same key id kept for `REFETCH_INTERVAL` (a minute), whose set still held
/// the key.
///
/// Broken until 9877cb7, which fixed it; this test failed before.
#[tokio::test]
async fn a_key_removed_from_the_set_stops_verifying_once_a_newer_set_is_held() {
    let kept = TestKey::rsa("kept");
    let leaked = TestKey::rsa("leaked");
    let host = KeyHost::start(kept.jwks(), Some("RS256")).await;
    let client_id = host.client_id();
    let server = host.server();
    refresh(&server, &kept.sign(&claims(&client_id, now())))
        .await
        .assert_oauth_error(400, "invalid_grant");

    // The client adds a key and uses it: a refetch for its kid finds it.
    host.rotate(json!({ "keys": [kept.jwk(), leaked.jwk()] }));
    refresh(&server, &leaked.sign(&claims(&client_id, now())))
        .await
        .assert_oauth_error(400, "invalid_grant");

    // The key leaks; the client removes it. Any refetch (here one for a key id nobody holds)
    // makes the server fetch and keep the set without it.
    host.rotate(kept.jwks());
    let stranger = TestKey::rsa("someone-else");
    refresh(&server, &stranger.sign(&claims(&client_id, now())))
        .await
        .assert_oauth_error(401, "invalid_client");
    refresh(&server, &kept.sign(&claims(&client_id, now())))
        .await
        .assert_oauth_error(400, "invalid_grant");

    // Whoever holds the removed key signs as the client.
    let reply = refresh(&server, &leaked.sign(&claims(&client_id, now()))).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "an assertion signed by a key the client removed from its set, after the server fetched \
         and kept the set without it, was accepted: {}",
        reply.text()
    );
}

/// The brief: "a key is used only with an algorithm of its type"; README/keys.rs: usable keys are
/// "RSA, EC P-256 or Ed25519". A JWK that says `crv: P-384` is read as a P-256 point when its
/// coordinates are 32 bytes long (jsonwebtoken's `from_jwk` ignores `crv`), and verifies ES256.
///
/// Broken until 9877cb7, which fixed it; this test failed before.
#[tokio::test]
async fn an_ec_key_labelled_p384_never_verifies_es256() {
    let key = TestKey::ec("p384");
    let mut jwk = key.jwk();
    jwk["crv"] = json!("P-384");
    let host = KeyHost::start(json!({ "keys": [jwk] }), None).await;
    let client_id = host.client_id();
    let server = host.server();
    let reply = refresh(&server, &key.sign(&claims(&client_id, now()))).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "an ES256 assertion verified with a key whose JWK says crv P-384: {}",
        reply.text()
    );
}

/// compact.rs: a header "is not a JOSE header this server understands ... a member twice, an
/// extension" and is refused; the brief: "`b64:false` [is] refused". `b64` sent twice, false
/// then true, is read as its last value (jsonwebtoken keeps unknown members in a map), so the
/// header passes as understood and the assertion verifies.
///
/// Broken until 9877cb7, which fixed it; this test failed before.
#[tokio::test]
async fn a_header_naming_b64_twice_is_refused() {
    let key = TestKey::rsa("k1");
    let host = KeyHost::start(key.jwks(), Some("RS256")).await;
    let client_id = host.client_id();
    let server = host.server();
    let header = r#"{"alg":"RS256","kid":"k1","b64":false,"b64":true}"#;
    let assertion = key.sign_raw("RS256", header, &claims(&client_id, now()).to_string());
    let reply = refresh(&server, &assertion).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "an assertion whose header names b64 twice (false, then true) was accepted: {}",
        reply.text()
    );
}

/// As [`an_ec_key_labelled_p384_never_verifies_es256`], for the other raw key type: an `OKP` JWK that
/// says `crv: P-256` (not Ed25519) verifies EdDSA with its 32 bytes read as an Ed25519 key.
///
/// Broken until 9877cb7, which fixed it; this test failed before.
#[tokio::test]
async fn an_okp_key_labelled_p256_never_verifies_eddsa() {
    let key = TestKey::ed("okp-p256");
    let mut jwk = key.jwk();
    jwk["crv"] = json!("P-256");
    let host = KeyHost::start(json!({ "keys": [jwk] }), None).await;
    let client_id = host.client_id();
    let server = host.server();
    let reply = refresh(&server, &key.sign(&claims(&client_id, now()))).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "an EdDSA assertion verified with an OKP key whose JWK says crv P-256: {}",
        reply.text()
    );
}

/// Held. The brief: "after a key set rotates (a new set fetched, a key replaced under the same
/// kid), nothing verifies with the old key's parsed form". The old key is parsed (used for RS256
/// and PS256) before the rotation; a new key under the same kid arrives with the set a refetch
/// for another kid brings; from then on the new key verifies under that kid and the old one,
/// for either algorithm it was parsed for, does not.
#[tokio::test]
async fn a_key_replaced_under_its_kid_verifies_nothing_once_the_new_set_is_held() {
    let old = TestKey::rsa("main");
    let host = KeyHost::start(old.jwks(), None).await;
    let client_id = host.client_id();
    let server = host.server();
    for alg in ["RS256", "PS256"] {
        refresh(
            &server,
            &old.sign_as(alg, Some("main"), &claims(&client_id, now())),
        )
        .await
        .assert_oauth_error(400, "invalid_grant");
    }

    let new = TestKey::rsa("main");
    let other = TestKey::rsa("second");
    host.rotate(json!({ "keys": [new.jwk(), other.jwk()] }));
    refresh(&server, &other.sign(&claims(&client_id, now())))
        .await
        .assert_oauth_error(400, "invalid_grant");
    for alg in ["RS256", "PS256"] {
        let reply = refresh(
            &server,
            &old.sign_as(alg, Some("main"), &claims(&client_id, now())),
        )
        .await;
        reply.assert_oauth_error(401, "invalid_client");
        assert!(
            reply.text().contains("signature does not verify"),
            "{alg}: {}",
            reply.text()
        );
        refresh(
            &server,
            &new.sign_as(alg, Some("main"), &claims(&client_id, now())),
        )
        .await
        .assert_oauth_error(400, "invalid_grant");
    }
}

/// Held. The brief: "a key registered by one client never verifies another client's assertion".
/// Two clients on one server, each publishing a key under the same kid; each key parsed by its
/// own client's use first. An assertion naming the other client as `iss` and `sub`, signed with
/// the first client's key under the shared kid, is refused, both ways, and each client still
/// gets in with its own key.
#[tokio::test]
async fn a_key_parsed_for_one_client_never_verifies_anothers_assertion() {
    let a_key = TestKey::ec("shared-kid");
    let b_key = TestKey::ec("shared-kid");
    let a = KeyHost::start(a_key.jwks(), None).await;
    let b = KeyHost::start(b_key.jwks(), None).await;
    let (a_id, b_id) = (a.client_id(), b.client_id());
    let port = |host: &KeyHost| -> u16 { host.base.rsplit(':').next().unwrap().parse().unwrap() };
    let mut config = config();
    config.cimd_allow_loopback_http_for_testing = true;
    config.cimd_allowed_ports = vec![443, port(&a), port(&b)];
    let server = TestServer::on(Stores::memory(), config, Router::new());
    for (key, id) in [(&a_key, &a_id), (&b_key, &b_id)] {
        refresh(&server, &key.sign(&claims(id, now())))
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
    for (key, id) in [(&a_key, &b_id), (&b_key, &a_id)] {
        let reply = refresh(&server, &key.sign(&claims(id, now()))).await;
        reply.assert_oauth_error(401, "invalid_client");
        assert!(
            reply.text().contains("signature does not verify"),
            "{}",
            reply.text()
        );
    }
    for (key, id) in [(&a_key, &a_id), (&b_key, &b_id)] {
        refresh(&server, &key.sign(&claims(id, now())))
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
}

/// 00ecc02: a key set that cannot be fetched through nobody's fault "answers 503 temporarily
/// unavailable for that client and URL for one second (OUTAGE_HOLD) without another fetch, so a
/// burst of requests cannot make the server fetch a down host in a loop or past the budget".
/// The hold starts when a failed fetch ends, and refetches are shared per key id only: a burst
/// of distinct made-up key ids from one address, sent while the host fails slowly, starts one
/// fetch per key id (up to the address's budget of 20, each holding a unit), and since each
/// failure is nobody's fault every unit is given back. Once the hold has passed, the same
/// address does it again: bursts spaced by the hold make the server fetch the down host 20
/// times a second from one address, for ever, its budget never spent.
///
/// Broken until 9877cb7, which fixed it; this test failed before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bursts_of_made_up_kids_spaced_by_the_hold_fetch_a_down_host_once_per_hold() {
    let key = TestKey::rsa("real");
    let host = KeyHost::start(key.jwks(), Some("RS256")).await;
    let client_id = host.client_id();
    let server = Arc::new(host.server());
    refresh(&server, &key.sign(&claims(&client_id, now())))
        .await
        .assert_oauth_error(400, "invalid_grant");

    host.down.store(true, Ordering::SeqCst);
    let forger = TestKey::rsa("unused");
    let peer = "198.51.100.7:443";
    let mut bursts = Vec::new();
    for burst in 0..5 {
        let before = host.jwks_hits.load(Ordering::SeqCst);
        let mut tasks = Vec::new();
        for i in 0..20 {
            let kid = format!("made-up-{burst}-{i}");
            let assertion = forger.sign_as("RS256", Some(&kid), &claims(&client_id, now()));
            let server = Arc::clone(&server);
            tasks.push(tokio::spawn(async move {
                token_from(&server, peer, &refresh_body(&assertion))
                    .await
                    .status
                    .as_u16()
            }));
        }
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for task in tasks {
            *statuses.entry(task.await.unwrap()).or_default() += 1;
        }
        bursts.push((host.jwks_hits.load(Ordering::SeqCst) - before, statuses));
        // Past the hold (a moka time-to-live of one second), not a timed assertion.
        tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    }
    let fetched: usize = bursts.iter().map(|(fetched, _)| fetched).sum();
    assert!(
        fetched <= 20,
        "five bursts of 20 made-up key ids from one address (failure budget 20), each after the \
         one-second hold, while the key host fails slowly with 503: the server fetched the down \
         host {fetched} times (per burst: fetches, answers by status): {bursts:?}"
    );
}

/// Held. The brief: "the algorithm comes from the registration or the allow-list ..., never from
/// the header alone"; the same holds for the key. An assertion signed by an attacker's key that
/// its header carries (`jwk`) or points at (`jku`, `x5u`, on a host the attacker runs), under a
/// kid the client's set holds or one it lacks, is refused, and nothing is fetched from the
/// attacker's host.
#[tokio::test]
async fn a_key_the_header_carries_or_points_at_is_never_used() {
    let real = TestKey::rsa("real");
    let host = KeyHost::start(real.jwks(), None).await;
    let attacker_key = TestKey::rsa("real");
    let attacker = KeyHost::start(attacker_key.jwks(), None).await;
    let client_id = host.client_id();
    let server = host.server();
    refresh(&server, &real.sign(&claims(&client_id, now())))
        .await
        .assert_oauth_error(400, "invalid_grant");
    let attacker_jwks = format!("{}/jwks.json", attacker.base);
    for kid in ["real", "attacker"] {
        let mut jwk = attacker_key.jwk();
        jwk["kid"] = json!(kid);
        for header in [
            json!({ "alg": "RS256", "kid": kid, "jwk": jwk }),
            json!({ "alg": "RS256", "kid": kid, "jku": attacker_jwks }),
            json!({ "alg": "RS256", "kid": kid, "x5u": attacker_jwks }),
        ] {
            let assertion = attacker_key.sign_with_header(&header, &claims(&client_id, now()));
            let reply = refresh(&server, &assertion).await;
            reply.assert_oauth_error(401, "invalid_client");
        }
    }
    assert_eq!(
        attacker.jwks_hits.load(Ordering::SeqCst),
        0,
        "the attacker's key host was fetched"
    );
}

/// The brief: "a key with private members or `kty: oct` refuses the whole set" (keys.rs: "a set
/// carrying any of them is a leaked secret, never a key to trust"). The client's host starts
/// publishing its private key (`d`); a refetch (here caused by anyone naming a made-up key id)
/// fetches that set and refuses it as invalid, but the cached set, which holds the same key, is
/// kept and stays in use until its freshness runs out (the host's max-age, up to a day; then the
/// last good copy may stand in for up to an hour more): the key whose private half is now public
/// keeps verifying, so anyone who read the set signs as the client.
///
/// Broken until 9877cb7, which fixed it; this test failed before.
#[tokio::test]
async fn a_set_seen_publishing_its_private_key_ends_the_cached_copy_of_that_key() {
    let key = TestKey::ec("leaks");
    let host = KeyHost::start(key.jwks(), None).await;
    let client_id = host.client_id();
    let server = host.server();
    refresh(&server, &key.sign(&claims(&client_id, now())))
        .await
        .assert_oauth_error(400, "invalid_grant");

    // The client's host now publishes the private key too (a deployment mistake); anyone can
    // read it. (The value of `d` does not matter: the member alone refuses the set.)
    let mut leaked = key.jwk();
    leaked["d"] = json!("bGVha2VkLXByaXZhdGUta2V5LWJ5dGVz");
    host.rotate(json!({ "keys": [leaked] }));
    // Anyone naming a key id the cached set lacks makes the server fetch the set again.
    let made_up = TestKey::ec("made-up");
    let reply = refresh(&server, &made_up.sign(&claims(&client_id, now()))).await;
    reply.assert_oauth_error(401, "invalid_client");
    assert!(reply.text().contains("invalid"), "{}", reply.text());
    assert_eq!(
        host.jwks_hits.load(Ordering::SeqCst),
        2,
        "the server fetched the set holding the private key"
    );
    let reply = refresh(&server, &key.sign(&claims(&client_id, now()))).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "after the client's key set was fetched publishing its private key, an assertion signed \
         with that key was accepted: {}",
        reply.text()
    );
}
