//! The failure budget is kept per address *and* per thing guessed: one client's secret, the setup
//! token, the owner's passkey sign-in, and (for requests naming no client that exists) one budget
//! for unknown clients. Failures by one party behind an address never deny another party's valid
//! credentials from that address, while guessing any one credential stays held to the budget.

use axum::http::StatusCode;
use mcp_oauth::RateLimit;
use serde_json::json;

use crate::common::*;
use crate::console::sign_in;

/// The default budget of failures per window.
const BUDGET: usize = 20;

/// A wrong secret for `client_id` at `/token`, sent by `server`'s peer; the status of the answer.
async fn wrong_secret(server: &TestServer, client_id: &str) -> u16 {
    server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_id", client_id),
                ("client_secret", "wrong-guess-wrong-guess"),
            ]),
            &[],
        )
        .await
        .status
        .as_u16()
}

/// `count` requests naming client ids that do not exist, from `server`'s peer.
async fn unknown_clients(server: &TestServer, count: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..count {
        statuses.push(wrong_secret(server, &format!("no-such-client-{i}")).await);
    }
    statuses
}

/// `count` wrong secrets for `client_id`, from `server`'s peer.
async fn wrong_secrets(server: &TestServer, client_id: &str, count: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        statuses.push(wrong_secret(server, client_id).await);
    }
    statuses
}

#[track_caller]
fn assert_budget_then_429(statuses: &[u16]) {
    let (checked, limited) = statuses.split_at(BUDGET);
    assert!(checked.iter().all(|s| *s == 401), "{statuses:?}");
    assert!(limited.iter().all(|s| *s == 429), "{statuses:?}");
}

/// A confidential client's credentials checked at `/revoke` (which any client may call, and which
/// answers 200 for a token it does not know).
async fn authenticate_as(server: &TestServer, client_id: &str, secret: &str) -> Reply {
    server
        .post_form(
            "/revoke",
            &form(&[("token", "x")]),
            &[("authorization", &basic(client_id, secret))],
        )
        .await
}

#[tokio::test]
async fn unknown_client_ids_from_a_shared_address_do_not_stop_a_real_clients_refresh() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    // Someone behind the same address (a NAT, a hosted client's egress, an untrusted proxy) sends
    // requests naming clients that do not exist: they spend a budget of their own.
    assert_budget_then_429(&unknown_clients(&server, BUDGET + 5).await);
    let refresh = server
        .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        refresh.status,
        StatusCode::OK,
        "unknown client ids denied a real client's refresh: {}",
        refresh.text()
    );
    // The pre-registered client's secret still works from that address too.
    assert_eq!(
        authenticate_as(&server, CLIENT_ID, CLIENT_SECRET)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn guessing_one_clients_secret_does_not_lock_out_another_client() {
    let server = TestServer::new().await;
    let other = server
        .register_client(json!({
            "redirect_uris": [LOOPBACK_REDIRECT],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .await;
    assert_budget_then_429(&wrong_secrets(&server, CLIENT_ID, BUDGET + 5).await);
    let reply = authenticate_as(
        &server,
        other["client_id"].as_str().unwrap(),
        other["client_secret"].as_str().unwrap(),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "another client's guesses denied this client's valid secret: {}",
        reply.text()
    );
    // Guessing stays limited: the guessed client's right secret is not checked either, so the
    // answer does not tell the guesser when a guess is right.
    let right = authenticate_as(&server, CLIENT_ID, CLIENT_SECRET).await;
    assert_eq!(
        right.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        right.text()
    );
    assert!(right.header("retry-after").is_some());
}

#[tokio::test]
async fn client_credential_failures_never_lock_the_owner_out() {
    let server = TestServer::new().await;
    let mut statuses = wrong_secrets(&server, CLIENT_ID, BUDGET + 5).await;
    statuses.extend(unknown_clients(&server, BUDGET + 5).await);
    assert!(
        statuses.iter().all(|s| matches!(s, 401 | 429)),
        "{statuses:?}"
    );
    // The owner enrols with the setup token, then signs in to the console, from the same address.
    let enrolled = server.register_passkey(SETUP_TOKEN).await;
    assert_eq!(
        enrolled.status,
        StatusCode::OK,
        "client failures spent the setup token's budget: {}",
        enrolled.text()
    );
    sign_in(&server).await;
}

#[tokio::test]
async fn setup_token_guesses_do_not_lock_the_owner_or_clients_out() {
    let mut config = config();
    // Past the registration tier's burst, so that only the failure budget answers 429.
    config.rate_limits.registration = RateLimit::new(1000, 1000);
    let server = TestServer::with_config(config).await;
    server.register_passkey(SETUP_TOKEN).await;
    let mut statuses = Vec::new();
    for i in 0..BUDGET + 5 {
        let guess = format!("setup-token-guess-{i:04}-0123456789");
        let reply = server
            .post_json("/passkey/register/start", &json!({ "setup_token": guess }))
            .await;
        statuses.push(reply.status.as_u16());
    }
    let (checked, limited) = statuses.split_at(BUDGET);
    assert!(checked.iter().all(|s| *s == 403), "{statuses:?}");
    assert!(limited.iter().all(|s| *s == 429), "{statuses:?}");
    // The owner's passkey still signs in, and clients still authenticate, from that address.
    sign_in(&server).await;
    assert_eq!(
        authenticate_as(&server, CLIENT_ID, CLIENT_SECRET)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_public_clients_failures_spend_no_budget() {
    // A public client has no secret to guess, and its id is shared (every user of a client
    // described by a metadata document sends the same one): what anyone sends with it spends
    // nothing that its other users behind the same address rely on.
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let statuses = wrong_secrets(&server, &client_id, BUDGET + 5).await;
    assert!(
        statuses.iter().all(|s| *s == 401),
        "secrets sent with a public client's id spent a budget: {statuses:?}"
    );
    for _ in 0..BUDGET + 5 {
        server
            .refresh(&client_id, "mcp_rt_not-a-refresh-token")
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
    let refresh = server
        .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refresh.status, StatusCode::OK, "{}", refresh.text());
}

#[tokio::test]
async fn failed_sign_ins_are_held_to_the_owners_budget() {
    let server = TestServer::ready().await;
    let mut statuses = Vec::new();
    for _ in 0..BUDGET + 1 {
        let challenge = server
            .post_json("/oauth/console/signin/start", &json!({}))
            .await
            .json();
        let mut forged = server.assert_with(&server.key, &challenge).await;
        forged["response"]["signature"] = json!("AAAA");
        let reply = server
            .post_json(
                "/oauth/console/signin/finish",
                &json!({ "ceremony_id": challenge["ceremony_id"], "credential": forged }),
            )
            .await;
        statuses.push(reply.status.as_u16());
    }
    let (checked, limited) = statuses.split_at(BUDGET);
    assert!(checked.iter().all(|s| *s == 403), "{statuses:?}");
    assert_eq!(limited, [429], "{statuses:?}");
    // The owner's real assertion is not checked either until the window ends...
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
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    // ...while clients from that address are unaffected.
    assert_eq!(
        authenticate_as(&server, CLIENT_ID, CLIENT_SECRET)
            .await
            .status,
        StatusCode::OK
    );
}
