//! Dynamic client registration: a registration lives its short unapproved lifetime until the
//! owner first approves the client, then the configured one; past the cap, registrations wait.

use serde_json::json;

use super::{Core, config, json_of};
use crate::oauth::RegisterError;
use crate::store::ClientStore;

#[tokio::test]
async fn a_registration_lapses_after_its_unapproved_lifetime() {
    let core = Core::with(config(|c| c.unapproved_client_lifetime_secs = 3_600));
    let client_id = core.register_public_client().await;
    core.advance(3_590);
    assert!(core.server.find_client(&client_id).await.unwrap().is_some());
    core.advance(10);
    assert!(
        core.server.find_client(&client_id).await.unwrap().is_none(),
        "lapsed by the server's clock, though the store still holds it"
    );
    assert!(core.store.get(&client_id).await.unwrap().is_some());
}

#[tokio::test]
async fn a_registration_records_its_time_and_what_approval_will_give() {
    let core = Core::with(config(|c| {
        c.registered_client_lifetime_secs = Some(90 * 24 * 3_600);
    }));
    core.advance(7);
    let now = core.clock.now();
    let body = json!({
        "redirect_uris": [super::REDIRECT],
        "token_endpoint_auth_method": "client_secret_post",
    });
    let registration = json_of(
        &core
            .server
            .register(body.to_string().as_bytes())
            .await
            .unwrap(),
    );
    assert_eq!(registration["client_id_issued_at"], now.0);
    assert_eq!(
        registration["client_secret_expires_at"],
        now.plus(90 * 24 * 3_600).0
    );
}

#[tokio::test]
async fn an_approved_client_lives_the_approved_lifetime() {
    let core = Core::with(config(|c| {
        c.unapproved_client_lifetime_secs = 3_600;
        c.registered_client_lifetime_secs = Some(30 * 24 * 3_600);
    }));
    let client = core.connect().await;
    let approved = core.store.get(&client.client_id).await.unwrap().unwrap();
    let approved_at = approved.approved_at.expect("approval recorded");
    assert_eq!(approved.expires_at, Some(approved_at.plus(30 * 24 * 3_600)));
    core.advance(3_600);
    assert!(
        core.server
            .find_client(&client.client_id)
            .await
            .unwrap()
            .is_some()
    );
    core.advance(30 * 24 * 3_600);
    assert!(
        core.server
            .find_client(&client.client_id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn past_the_cap_a_registration_is_told_to_wait() {
    let core = Core::with(config(|c| c.max_unapproved_clients = 1));
    core.register_public_client().await;
    let body = json!({ "redirect_uris": [super::REDIRECT], "token_endpoint_auth_method": "none" });
    let refused = core.server.register(body.to_string().as_bytes()).await;
    assert!(matches!(refused, Err(RegisterError::Full)), "{refused:?}");
}
