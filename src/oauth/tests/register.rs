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

/// A registration `private_key_jwt` with every kept member at its limit, and 16 RSA keys whose
/// moduli are `modulus_chars` long.
fn largest_registration(modulus_chars: usize) -> serde_json::Value {
    let redirect_uris: Vec<String> = (0..20)
        .map(|i| {
            let base = format!("https://client.example/{i:02}/");
            format!("{base}{}", "u".repeat(4096 / 20 - base.len()))
        })
        .collect();
    let keys: Vec<serde_json::Value> = (0..16)
        .map(|i| json!({ "kty": "RSA", "kid": format!("key-{i:02}"), "use": "sig", "alg": "RS256", "n": "q".repeat(modulus_chars), "e": "AQAB" }))
        .collect();
    json!({
        "redirect_uris": redirect_uris,
        "client_name": "𝕏".repeat(200),
        "client_uri": format!("https://client.example/{}", "u".repeat(2000 - 23)),
        "scope": "s".repeat(1024),
        "application_type": "native",
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "RS256",
        "jwks": { "keys": keys },
    })
}

/// What a stranger can make us keep is bounded: the largest registration, its inline keys just
/// under their limit, is a record of under 25 KiB of JSON.
#[tokio::test]
async fn the_largest_registration_with_keys_is_a_bounded_record() {
    let core = Core::new();
    // The longest moduli that still fit under the limit on a kept key set.
    let (mut fits, mut too_long) = (0, 2_000);
    while too_long - fits > 1 {
        let middle = usize::midpoint(fits, too_long);
        let body = largest_registration(middle).to_string();
        match core.server.register(body.as_bytes()).await {
            Ok(_) => fits = middle,
            Err(RegisterError::Refused(error)) => {
                assert!(
                    error.description.contains("jwks is larger than"),
                    "{error:?}"
                );
                too_long = middle;
            }
            Err(RegisterError::Full) => panic!("full"),
        }
    }
    let body = largest_registration(fits).to_string();
    let registration = json_of(&core.server.register(body.as_bytes()).await.unwrap());
    let kept_keys = registration["jwks"].to_string().len();
    assert!(
        kept_keys > 16 * 1024 - 200 && kept_keys <= 16 * 1024,
        "{kept_keys}"
    );
    let client_id = registration["client_id"].as_str().unwrap();
    let record = core.store.get(client_id).await.unwrap().unwrap();
    let stored = serde_json::to_string(&record).unwrap().len();
    assert!(stored < 25 * 1024, "the largest record is {stored} bytes");
    println!("the largest registration record: {stored} bytes of JSON");
}
