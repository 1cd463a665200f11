//! Eighth outside review of issue 21 (the fixes of 9877cb7: refetch turns per client and key URL,
//! the newest set answering a kept refetch, a set found invalid ending the one held; the header
//! type of 933ae9a): attacks by HTTP on a real server with a loopback key host whose key set can
//! be made to stall until the test lets it answer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::common::jose::{TestKey, claims, now};
use crate::common::*;

/// A client's host on loopback: its metadata document (`private_key_jwt`) and its key set,
/// cacheable for five minutes, which a test replaces (a rotation). While `stalled`, each request
/// for the key set is counted and then waits until the test opens `gate`.
struct KeyHost {
    base: String,
    jwks: Arc<Mutex<Value>>,
    stalled: Arc<AtomicBool>,
    /// Once set, the key set answers 503 at once (the host down: nobody's fault).
    down: Arc<AtomicBool>,
    gate: Arc<Semaphore>,
    jwks_hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KeyHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeyHost {
    async fn start(jwks: Value) -> Self {
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let document = json!({
            "client_id": format!("{base}/client.json"),
            "client_name": "Machine",
            "client_uri": "https://client.example/",
            "redirect_uris": ["https://client.example/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "RS256",
            "jwks_uri": format!("{base}/jwks.json"),
        });
        let jwks = Arc::new(Mutex::new(jwks));
        let stalled = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Semaphore::new(0));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let (set, is_stalled, is_down, hits, opened) = (
            Arc::clone(&jwks),
            Arc::clone(&stalled),
            Arc::clone(&down),
            Arc::clone(&jwks_hits),
            Arc::clone(&gate),
        );
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
                    let stall = is_stalled.load(Ordering::SeqCst);
                    let down = is_down.load(Ordering::SeqCst);
                    let (set, gate) = (Arc::clone(&set), Arc::clone(&opened));
                    async move {
                        if down {
                            return StatusCode::SERVICE_UNAVAILABLE.into_response();
                        }
                        if stall {
                            gate.acquire().await.unwrap().forget();
                        }
                        // Read when answering: what the host publishes when the answer leaves.
                        let body = set.lock().unwrap().to_string();
                        cacheable(body)
                    }
                }),
            );
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base,
            jwks,
            stalled,
            down,
            gate,
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

    fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    /// Until the key set has been asked for `count` times in all.
    async fn asked(&self, count: usize) {
        while self.hits() < count {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    fn open(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.gate.add_permits(1_000);
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

const CLIENT: &str = "192.0.2.10:443";
const ATTACKER: &str = "198.51.100.7:443";

/// Guarantee 2: "`crit`, or `b64` other than true refuses the header". `"crit": null` and
/// `"b64": null` are read as absent (an `Option` deserialises JSON null as `None`), so a header
/// naming them passes as understood and the assertion verifies.
///
/// Broken until bba7d72, which fixed it; this test failed before.
#[tokio::test]
async fn a_header_with_crit_or_b64_null_is_refused() {
    let key = TestKey::rsa("k1");
    let host = KeyHost::start(key.jwks()).await;
    let client_id = host.client_id();
    let server = host.server();
    let mut accepted = Vec::new();
    for header in [
        r#"{"alg":"RS256","kid":"k1","crit":null}"#,
        r#"{"alg":"RS256","kid":"k1","b64":null}"#,
    ] {
        let assertion = key.sign_raw("RS256", header, &claims(&client_id, now()).to_string());
        let reply = token_from(&server, CLIENT, &refresh_body(&assertion)).await;
        if reply.status != StatusCode::UNAUTHORIZED {
            accepted.push((header, reply.status.as_u16(), reply.text()));
        }
    }
    assert!(
        accepted.is_empty(),
        "assertions whose header names crit or b64 as null were not refused: {accepted:?}"
    );
}

/// Guarantee 3 with 5: "nothing verifies with a key the newest set held does not have". A
/// request naming a removed key's id, whose refetch is kept for the minute, waits for the turn
/// behind a refetch (anyone's made-up key id) that finds the client's set invalid and so ends the
/// set held; the kept refetch then answers with `held().unwrap_or(refetched)`: nothing is held,
/// so the older set, which still has the removed key, verifies it.
///
/// Broken until bba7d72, which fixed it; this test failed before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_key_stays_refused_once_an_invalid_set_ends_the_one_held() {
    let kept = TestKey::rsa("kept");
    let leaked = TestKey::rsa("leaked");
    let host = KeyHost::start(kept.jwks()).await;
    let client_id = host.client_id();
    let server = Arc::new(host.server());
    token_from(
        &server,
        CLIENT,
        &refresh_body(&kept.sign(&claims(&client_id, now()))),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    // The client adds a key and uses it: the refetch for its kid is kept for the minute.
    host.rotate(json!({ "keys": [kept.jwk(), leaked.jwk()] }));
    token_from(
        &server,
        CLIENT,
        &refresh_body(&leaked.sign(&claims(&client_id, now()))),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    // The key leaks; the client removes it, and a refetch (anyone's) brings the set without it.
    host.rotate(kept.jwks());
    let stranger = TestKey::rsa("someone-else");
    token_from(
        &server,
        ATTACKER,
        &refresh_body(&stranger.sign(&claims(&client_id, now()))),
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    token_from(
        &server,
        ATTACKER,
        &refresh_body(&leaked.sign(&claims(&client_id, now()))),
    )
    .await
    .assert_oauth_error(401, "invalid_client");

    // The client's host then publishes a broken set (its private key by mistake), slowly.
    let mut broken = kept.jwk();
    broken["d"] = json!("bGVha2VkLXByaXZhdGUta2V5LWJ5dGVz");
    host.rotate(json!({ "keys": [broken] }));
    host.stalled.store(true, Ordering::SeqCst);
    let before = host.hits();
    let made_up = TestKey::rsa("made-up");
    let first = {
        let (server, assertion) = (
            Arc::clone(&server),
            made_up.sign(&claims(&client_id, now())),
        );
        tokio::spawn(async move { token_from(&server, ATTACKER, &refresh_body(&assertion)).await })
    };
    host.asked(before + 1).await;
    // Whoever holds the removed key names it now: it waits for the turn.
    let second = {
        let (server, assertion) = (Arc::clone(&server), leaked.sign(&claims(&client_id, now())));
        tokio::spawn(async move { token_from(&server, ATTACKER, &refresh_body(&assertion)).await })
    };
    // Sequencing only (the second request reaches the turn): no assertion on time.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    host.open();
    first
        .await
        .unwrap()
        .assert_oauth_error(401, "invalid_client");
    let reply = second.await.unwrap();
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "an assertion signed by a key the client removed (the newest valid set held lacks it, \
         and the set fetched last is invalid) was accepted from the refetch kept for its kid: {}",
        reply.text()
    );
}

/// Guarantee 4 and the assertion module: "a request sharing a refetch under way holds none ...,
/// so a client's burst of first uses of a new key is never 429". While the turn for the client's
/// key URL is held by another refetch (here a stranger's made-up key id, on a slow key host), no
/// refetch for the real new key id is marked under way, so every request of the client's burst
/// holds a unit of the client's budget while it waits for the turn; past 20, the rest of the
/// burst is answered 429, from the client's own address, for a key its set publishes.
#[ignore = "review8, open: a client's burst of first uses of its new key waiting for the turn behind a stranger's refetch gets 429 (units held while waiting)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_first_uses_waiting_behind_a_strangers_refetch_is_answered_429() {
    let old = TestKey::rsa("2026-11");
    let new = TestKey::rsa("2026-12");
    let host = KeyHost::start(old.jwks()).await;
    let client_id = host.client_id();
    let server = Arc::new(host.server());
    token_from(
        &server,
        CLIENT,
        &refresh_body(&old.sign(&claims(&client_id, now()))),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");

    host.rotate(json!({ "keys": [old.jwk(), new.jwk()] }));
    host.stalled.store(true, Ordering::SeqCst);
    let before = host.hits();
    let stranger = {
        let server = Arc::clone(&server);
        let assertion = TestKey::rsa("made-up").sign(&claims(&client_id, now()));
        tokio::spawn(async move { token_from(&server, ATTACKER, &refresh_body(&assertion)).await })
    };
    host.asked(before + 1).await;
    let mut burst = Vec::new();
    for _ in 0..30 {
        let server = Arc::clone(&server);
        let assertion = new.sign(&claims(&client_id, now()));
        burst.push(tokio::spawn(async move {
            token_from(&server, CLIENT, &refresh_body(&assertion))
                .await
                .status
                .as_u16()
        }));
    }
    // Sequencing only (the burst reaches the turn): no assertion on time.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    host.open();
    stranger
        .await
        .unwrap()
        .assert_oauth_error(401, "invalid_client");
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for task in burst {
        *statuses.entry(task.await.unwrap()).or_default() += 1;
    }
    // The units held while waiting were given back: the client's next use authenticates.
    token_from(
        &server,
        CLIENT,
        &refresh_body(&new.sign(&claims(&client_id, now()))),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        statuses.get(&429).copied().unwrap_or(0),
        0,
        "30 concurrent first uses of the client's published new key, from its address, while a \
         stranger's refetch held the turn: answers by status {statuses:?} (400 = authenticated)"
    );
}

/// Long enough that only a request held for good (a turn never released) reaches it; the tests
/// below assert no time, they only turn a hang into a failure.
const HANG: std::time::Duration = std::time::Duration::from_secs(30);

/// Held. Guarantee 4: "a real client's known key is never held up by the turns". While a
/// stranger's refetch holds the turn on a key host that does not answer, the client's assertions
/// signed with its known key authenticate, before the host answers anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_known_key_verifies_while_a_strangers_refetch_holds_the_turn() {
    let key = TestKey::rsa("known");
    let host = KeyHost::start(key.jwks()).await;
    let client_id = host.client_id();
    let server = Arc::new(host.server());
    token_from(
        &server,
        CLIENT,
        &refresh_body(&key.sign(&claims(&client_id, now()))),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    host.stalled.store(true, Ordering::SeqCst);
    let before = host.hits();
    let stranger = {
        let server = Arc::clone(&server);
        let assertion = TestKey::rsa("made-up").sign(&claims(&client_id, now()));
        tokio::spawn(async move { token_from(&server, ATTACKER, &refresh_body(&assertion)).await })
    };
    host.asked(before + 1).await;
    for _ in 0..5 {
        let reply = tokio::time::timeout(
            HANG,
            token_from(
                &server,
                CLIENT,
                &refresh_body(&key.sign(&claims(&client_id, now()))),
            ),
        )
        .await
        .expect("the client's known key waited for the stranger's refetch");
        reply.assert_oauth_error(400, "invalid_grant");
    }
    host.open();
    stranger
        .await
        .unwrap()
        .assert_oauth_error(401, "invalid_client");
}

/// Held. "A dropped request holding a turn": the request whose refetch holds the turn is
/// abandoned (the client hangs up) while the key host has not answered; the turn is released
/// with it, and the client's first use of its new key then refetches and authenticates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_dropped_while_its_refetch_holds_the_turn_releases_it() {
    let old = TestKey::rsa("2026-11");
    let new = TestKey::rsa("2026-12");
    let host = KeyHost::start(old.jwks()).await;
    let client_id = host.client_id();
    let server = Arc::new(host.server());
    token_from(
        &server,
        CLIENT,
        &refresh_body(&old.sign(&claims(&client_id, now()))),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    host.stalled.store(true, Ordering::SeqCst);
    let before = host.hits();
    let abandoned = {
        let server = Arc::clone(&server);
        let assertion = TestKey::rsa("made-up").sign(&claims(&client_id, now()));
        tokio::spawn(async move { token_from(&server, ATTACKER, &refresh_body(&assertion)).await })
    };
    host.asked(before + 1).await;
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());
    host.rotate(json!({ "keys": [old.jwk(), new.jwk()] }));
    host.open();
    let reply = tokio::time::timeout(
        HANG,
        token_from(
            &server,
            CLIENT,
            &refresh_body(&new.sign(&claims(&client_id, now()))),
        ),
    )
    .await
    .expect("the turn of the abandoned request was never released");
    reply.assert_oauth_error(400, "invalid_grant");
}

/// The brief: "a turn held across a slow fetch blocking a real client's refetch for its real new
/// key (how long ...)". Ten strangers' made-up key ids from one address queue for the turn
/// while the client's key host is slow; the client's first use of its new key queues behind
/// them. The first stranger's fetch already brings (and keeps) the set holding the new key, yet
/// the client's request waits for every queued stranger's fetch, one after another, and then
/// fetches once more itself: its answer comes after 11 fetches of the slow host, not 1 or 2 (with
/// the 5 s fetch time limit, up to a minute for a stranger's budget of 20, more with more
/// addresses).
#[ignore = "review8, open: a client's first use of its new key waits for every stranger's refetch queued before it on the turn (it no longer fetches itself once its key is held)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_first_use_of_a_new_key_waits_for_every_strangers_queued_refetch() {
    let old = TestKey::rsa("2026-11");
    let new = TestKey::rsa("2026-12");
    let host = Arc::new(KeyHost::start(old.jwks()).await);
    let client_id = host.client_id();
    let server = Arc::new(host.server());
    token_from(
        &server,
        CLIENT,
        &refresh_body(&old.sign(&claims(&client_id, now()))),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    host.rotate(json!({ "keys": [old.jwk(), new.jwk()] }));
    host.stalled.store(true, Ordering::SeqCst);
    let before = host.hits();
    let mut strangers = Vec::new();
    for i in 0..10 {
        let server = Arc::clone(&server);
        let assertion = TestKey::rsa(&format!("made-up-{i}")).sign(&claims(&client_id, now()));
        strangers.push(tokio::spawn(async move {
            token_from(&server, ATTACKER, &refresh_body(&assertion)).await
        }));
    }
    host.asked(before + 1).await;
    // Sequencing only (the strangers reach the turn first): no assertion on time.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let client = {
        let (server, host) = (Arc::clone(&server), Arc::clone(&host));
        let assertion = new.sign(&claims(&client_id, now()));
        tokio::spawn(async move {
            let reply = token_from(&server, CLIENT, &refresh_body(&assertion)).await;
            (reply, host.hits())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    host.open();
    let (reply, hits_when_answered) = client.await.unwrap();
    reply.assert_oauth_error(400, "invalid_grant");
    for stranger in strangers {
        stranger
            .await
            .unwrap()
            .assert_oauth_error(401, "invalid_client");
    }
    let fetched = hits_when_answered - before;
    assert!(
        fetched <= 2,
        "the client's first use of its published new key was answered only after {fetched} \
         fetches of its slow key host (the first already brought its key)"
    );
}

/// Guarantee 4: "the failure budget (20 per address) bounds what a sender can make the server
/// fetch". A made-up key id whose refetch finds the host down costs its sender nothing (the unit
/// is given back: nobody's fault), so one address sending one made-up key id each time the
/// one-second hold has passed makes the server fetch the down host once a second for as long as
/// it likes: here 25 fetches from one address with a budget of 20, none of it spent.
#[ignore = "review8, open: made-up key ids spaced past the outage hold fetch a down host once per hold without end, the budget never spent"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn made_up_kids_spaced_past_the_hold_fetch_a_down_host_past_the_budget() {
    let key = TestKey::rsa("real");
    let host = KeyHost::start(key.jwks()).await;
    let client_id = host.client_id();
    let server = host.server();
    token_from(
        &server,
        CLIENT,
        &refresh_body(&key.sign(&claims(&client_id, now()))),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    host.down.store(true, Ordering::SeqCst);
    let before = host.hits();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..25 {
        let assertion = TestKey::rsa(&format!("made-up-{i}")).sign(&claims(&client_id, now()));
        let reply = token_from(&server, ATTACKER, &refresh_body(&assertion)).await;
        *statuses.entry(reply.status.as_u16()).or_default() += 1;
        // Past the hold (a moka time-to-live of one second), not a timed assertion.
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    }
    let fetched = host.hits() - before;
    assert!(
        fetched <= 20,
        "25 made-up key ids from one address (failure budget 20), each past the one-second \
         hold, while the key host is down: the server fetched it {fetched} times (answers by \
         status {statuses:?})"
    );
}

/// Guarantee 2: "a JOSE header member sent twice ... refuses the header" (compact.rs: "a member
/// twice" makes the header one this server does not understand). Only the members `Header`
/// reads are caught twice; any other member (`typ`, `jku`) sent twice passes, and the assertion
/// verifies.
///
/// Broken until bba7d72, which fixed it; this test failed before.
#[tokio::test]
async fn a_header_naming_another_member_twice_is_refused() {
    let key = TestKey::rsa("k1");
    let host = KeyHost::start(key.jwks()).await;
    let client_id = host.client_id();
    let server = host.server();
    let mut accepted = Vec::new();
    for header in [
        r#"{"alg":"RS256","kid":"k1","typ":"JWT","typ":"JOSE"}"#,
        r#"{"alg":"RS256","kid":"k1","jku":"https://a.example/","jku":"https://b.example/"}"#,
    ] {
        let assertion = key.sign_raw("RS256", header, &claims(&client_id, now()).to_string());
        let reply = token_from(&server, CLIENT, &refresh_body(&assertion)).await;
        if reply.status != StatusCode::UNAUTHORIZED {
            accepted.push((header, reply.status.as_u16(), reply.text()));
        }
    }
    assert!(
        accepted.is_empty(),
        "assertions whose header names a member twice were not refused: {accepted:?}"
    );
}
