//! Passkey enrolment and approval.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::common::*;

#[tokio::test]
async fn the_setup_token_registers_one_passkey_once() {
    let server = TestServer::new().await;
    assert!(
        server
            .oauth
            .setup_url()
            .await
            .unwrap()
            .unwrap()
            .ends_with(&format!("#setup_token={SETUP_TOKEN}"))
    );
    let first = server.register_passkey(SETUP_TOKEN).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.json()["label"], "soft key");
    let again = server.register_passkey(SETUP_TOKEN).await;
    again.assert_oauth_error(403, "access_denied");
    assert_eq!(server.oauth.setup_url().await.unwrap(), None);
    assert_eq!(server.stores.passkeys.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_wrong_setup_token_is_refused() {
    let server = TestServer::new().await;
    for wrong in [
        "nope",
        "setup-token-for-tests-012345678",
        "setup-token-for-tests-01234567890",
        "",
    ] {
        let reply = server
            .post_json("/passkey/register/start", &json!({ "setup_token": wrong }))
            .await;
        assert!(reply.status.is_client_error(), "{wrong}: {}", reply.status);
    }
    assert!(server.stores.passkeys.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn two_registrations_racing_on_one_setup_token_yield_one_passkey() {
    let server = TestServer::new().await;
    let a = server
        .post_json(
            "/passkey/register/start",
            &json!({ "setup_token": SETUP_TOKEN }),
        )
        .await
        .json();
    let b = server
        .post_json(
            "/passkey/register/start",
            &json!({ "setup_token": SETUP_TOKEN }),
        )
        .await
        .json();
    let other_key = Mutex::new(SoftAuthenticator::new(true));
    let first = server.finish_registration(a).await;
    // Finish the second with another authenticator, through the same server.
    let options = serde_json::from_value(b["options"].clone()).unwrap();
    let credential = webauthn_authenticator_rs::WebauthnAuthenticator::do_registration(
        &mut *other_key.lock().await,
        url::Url::parse(SERVER_URL).unwrap(),
        options,
    )
    .unwrap();
    let second = server
        .post_json(
            "/passkey/register/finish",
            &json!({ "ceremony_id": b["ceremony_id"], "credential": credential }),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    second.assert_oauth_error(403, "access_denied");
    assert_eq!(server.stores.passkeys.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_further_passkey_needs_an_existing_passkeys_approval() {
    let server = TestServer::ready().await;
    // No token, no approval.
    let reply = server
        .post_json("/passkey/register/start", &json!({}))
        .await;
    reply.assert_oauth_error(400, "invalid_request");
    // Approval by the existing passkey.
    let second_key = Mutex::new(SoftAuthenticator::new(true));
    add_passkey_approved_by_the_owner(&server, &second_key).await;
    assert_eq!(server.stores.passkeys.list().await.unwrap().len(), 2);
    // The new passkey approves clients too.
    let client_id = server.register_public_client().await;
    let request_id = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
    let challenge = server
        .post_json("/authorize/challenge", &json!({ "request_id": request_id }))
        .await
        .json();
    let assertion = server.assert_with(&second_key, &challenge).await;
    let approved = server
        .post_json(
            "/authorize/approve",
            &json!({ "request_id": request_id, "ceremony_id": challenge["ceremony_id"], "credential": assertion }),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
}

#[tokio::test]
async fn an_assertion_approves_only_the_request_it_was_made_for_and_only_once() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let mut request_ids = Vec::new();
    for _ in 0..2 {
        request_ids.push(server.pending_request(&client_id, LOOPBACK_REDIRECT).await);
    }
    let challenge = server
        .post_json(
            "/authorize/challenge",
            &json!({ "request_id": request_ids[0] }),
        )
        .await
        .json();
    let assertion = server.assert_with(&server.key, &challenge).await;
    // Spent on the other request: refused, and the ceremony is used up.
    let wrong = server
        .post_json(
            "/authorize/approve",
            &json!({ "request_id": request_ids[1], "ceremony_id": challenge["ceremony_id"], "credential": assertion }),
        )
        .await;
    wrong.assert_oauth_error(400, "invalid_request");
    let replay = server
        .post_json(
            "/authorize/approve",
            &json!({ "request_id": request_ids[0], "ceremony_id": challenge["ceremony_id"], "credential": assertion }),
        )
        .await;
    replay.assert_oauth_error(400, "invalid_request");
    // An enrolment assertion cannot approve a client either.
    let enrol = server
        .post_json("/passkey/register/approval", &json!({}))
        .await
        .json();
    let assertion = server.assert_with(&server.key, &enrol).await;
    let misuse = server
        .post_json(
            "/authorize/approve",
            &json!({ "request_id": request_ids[1], "ceremony_id": enrol["ceremony_id"], "credential": assertion }),
        )
        .await;
    misuse.assert_oauth_error(400, "invalid_request");
}

#[tokio::test]
async fn a_stranger_passkey_cannot_approve() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let request_id = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
    let challenge = server
        .post_json("/authorize/challenge", &json!({ "request_id": request_id }))
        .await
        .json();
    // A different authenticator: it holds no credential the server allows, so it cannot even sign;
    // a forged assertion reusing the owner's credential id with a wrong signature is refused.
    let owner_assertion = server.assert_with(&server.key, &challenge).await;
    let mut forged = owner_assertion.clone();
    forged["response"]["signature"] = json!("AAAA");
    let reply = server
        .post_json(
            "/authorize/approve",
            &json!({ "request_id": request_id, "ceremony_id": challenge["ceremony_id"], "credential": forged }),
        )
        .await;
    reply.assert_oauth_error(403, "access_denied");
}

/// The assertion options anyone can ask for: the consent page's, the console sign-in's, and the
/// approval of a new passkey's.
async fn anonymous_assertion_options(server: &TestServer) -> Vec<(&'static str, Value)> {
    let client_id = server.register_public_client().await;
    let request_id = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
    let mut served = Vec::new();
    for (path, body) in [
        ("/authorize/challenge", json!({ "request_id": request_id })),
        ("/oauth/console/signin/start", json!({})),
        ("/passkey/register/approval", json!({})),
    ] {
        let reply = server.post_json(path, &body).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        served.push((path, reply.json()));
    }
    served
}

#[tokio::test]
async fn assertion_options_name_none_of_the_owners_passkeys() {
    let server = TestServer::ready().await;
    let phone = Mutex::new(SoftAuthenticator::new(true));
    add_passkey_approved_by_the_owner(&server, &phone).await;
    let ids: Vec<String> = server
        .stores
        .passkeys
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.credential_id)
        .collect();
    assert_eq!(ids.len(), 2);
    for (path, challenge) in anonymous_assertion_options(&server).await {
        let allowed = &challenge["options"]["publicKey"]["allowCredentials"];
        assert!(
            allowed.is_null() || allowed.as_array().is_some_and(Vec::is_empty),
            "{path} lists credentials: {allowed}"
        );
        let served = challenge.to_string();
        for id in &ids {
            assert!(!served.contains(id.as_str()), "{path} reveals {id}");
        }
    }
    // Both passkeys still approve, each finding its own credential.
    let client_id = server.register_public_client().await;
    for key in [&*server.key, &phone] {
        let request_id = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
        let challenge = server
            .post_json("/authorize/challenge", &json!({ "request_id": request_id }))
            .await
            .json();
        let assertion = server.assert_with(key, &challenge).await;
        let approved = server
            .post_json(
                "/authorize/approve",
                &json!({ "request_id": request_id, "ceremony_id": challenge["ceremony_id"], "credential": assertion }),
            )
            .await;
        assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
    }
}

#[tokio::test]
async fn a_strangers_discoverable_passkey_cannot_approve() {
    let server = TestServer::ready().await;
    // The stranger's authenticator holds a discoverable credential for this very relying party,
    // made on another server with the same URL: it signs when asked, under its own user handle.
    let elsewhere = TestServer::ready().await;
    let stranger = &elsewhere.key;
    let owner = server.stores.passkeys.list().await.unwrap()[0].user_id;
    let client_id = server.register_public_client().await;
    for claim_the_owners_handle in [false, true] {
        let request_id = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
        let challenge = server
            .post_json("/authorize/challenge", &json!({ "request_id": request_id }))
            .await
            .json();
        let mut assertion = server.assert_with(stranger, &challenge).await;
        if claim_the_owners_handle {
            assertion["response"]["userHandle"] = json!(URL_SAFE_NO_PAD.encode(owner.as_bytes()));
        }
        let reply = server
            .post_json(
                "/authorize/approve",
                &json!({ "request_id": request_id, "ceremony_id": challenge["ceremony_id"], "credential": assertion }),
            )
            .await;
        reply.assert_oauth_error(403, "access_denied");
    }
}

#[tokio::test]
async fn use_updates_the_stored_credential() {
    let server = TestServer::ready().await;
    let before = server.stores.passkeys.list().await.unwrap()[0].clone();
    assert!(before.last_used_at.is_none());
    server.connected_client().await;
    let after = server.stores.passkeys.list().await.unwrap()[0].clone();
    assert!(after.last_used_at.is_some());
}

#[tokio::test]
async fn registration_page_has_the_contract_ids() {
    let server = TestServer::new().await;
    let reply = server.get("/passkey/register").await;
    assert_eq!(reply.status, StatusCode::OK);
    let page = reply.text();
    for id in ["id=\"setup_token\"", "id=\"register\"", "id=\"status\""] {
        assert!(page.contains(id), "{id}");
    }
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
}

/// Add a passkey on `key`, approved by the server's current one, through the public endpoints.
pub(crate) async fn add_passkey_approved_by_the_owner(
    server: &TestServer,
    key: &Mutex<SoftAuthenticator>,
) {
    let challenge = server
        .post_json("/passkey/register/approval", &json!({}))
        .await
        .json();
    let assertion = server.assert_with(&server.key, &challenge).await;
    let start = server
        .post_json(
            "/passkey/register/start",
            &json!({ "approval": { "ceremony_id": challenge["ceremony_id"], "credential": assertion }, "label": "phone" }),
        )
        .await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.text());
    let options = serde_json::from_value(start.json()["options"].clone()).unwrap();
    let credential = webauthn_authenticator_rs::WebauthnAuthenticator::do_registration(
        &mut *key.lock().await,
        url::Url::parse(SERVER_URL).unwrap(),
        options,
    )
    .unwrap();
    let done = server
        .post_json(
            "/passkey/register/finish",
            &json!({ "ceremony_id": start.json()["ceremony_id"], "credential": credential }),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
}

/// The owner registers with the configured setup token, adds a second passkey, removes the first,
/// and restarts with a fresh (in-memory) token store: the setup token, still configured, must stay
/// used, or whoever holds it could register a passkey and approve anything.
async fn a_used_setup_token_survives_its_passkey_and_a_restart<F, Fut>(open_passkeys: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::sync::Arc<dyn mcp_oauth::PasskeyStore>>,
{
    let fresh_stores = |passkeys| Stores {
        passkeys,
        ..Stores::memory()
    };
    let before = TestServer::on(fresh_stores(open_passkeys().await), config(), mcp_routes());
    let first = before.register_passkey(SETUP_TOKEN).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let first_id = before.oauth.admin().passkeys().await.unwrap()[0]
        .credential_id
        .clone();
    add_passkey_approved_by_the_owner(&before, &Mutex::new(SoftAuthenticator::new(true))).await;
    before
        .oauth
        .admin()
        .remove_passkey(&first_id)
        .await
        .unwrap();
    drop(before);

    let after = TestServer::on(fresh_stores(open_passkeys().await), config(), mcp_routes());
    after
        .register_passkey(SETUP_TOKEN)
        .await
        .assert_oauth_error(403, "access_denied");
    assert_eq!(after.oauth.setup_url().await.unwrap(), None);
    let left = after.stores.passkeys.list().await.unwrap();
    assert_eq!(left.len(), 1, "only the second passkey is registered");
    assert_eq!(left[0].label, "phone");
}

#[tokio::test]
async fn a_used_setup_token_stays_used_after_its_passkey_is_removed_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passkeys.json");
    a_used_setup_token_survives_its_passkey_and_a_restart(|| async {
        std::sync::Arc::new(mcp_oauth::PasskeyFileStore::open(&path).unwrap()) as _
    })
    .await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_used_setup_token_stays_used_in_sqlite_after_its_passkey_is_removed_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
    a_used_setup_token_survives_its_passkey_and_a_restart(|| async {
        std::sync::Arc::new(
            mcp_oauth::backends::sqlite::SqliteStore::connect(&url)
                .await
                .unwrap(),
        ) as _
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_used_setup_token_stays_used_in_postgres_after_its_passkey_is_removed_and_a_restart() {
    let Some(url) = crate::postgres_support::fresh_postgres_url().await else {
        return;
    };
    a_used_setup_token_survives_its_passkey_and_a_restart(|| async {
        std::sync::Arc::new(
            mcp_oauth::backends::PostgresStore::connect(&url)
                .await
                .unwrap(),
        ) as _
    })
    .await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_used_setup_token_stays_used_in_redis_after_its_passkey_is_removed_and_a_restart() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("mcp_oauth_setup_{:016x}:", rand::random::<u64>());
    a_used_setup_token_survives_its_passkey_and_a_restart(|| async {
        std::sync::Arc::new(
            mcp_oauth::backends::redis::RedisStore::connect(&url)
                .await
                .unwrap()
                .with_prefix(&prefix),
        ) as _
    })
    .await;
}
