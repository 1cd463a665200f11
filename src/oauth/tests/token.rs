//! The token endpoint: a code is exchanged once, tokens expire by the server's clock, refresh
//! tokens rotate with a grace window for retries.

use super::{Core, assert_error, config, string};

#[tokio::test]
async fn a_code_is_exchanged_once_and_its_replay_revokes_what_it_issued() {
    let core = Core::new();
    let (client_id, code, verifier) = core.code().await;
    let tokens = core.exchange(&client_id, &code, &verifier).await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 86_400, "the configured lifetime");
    let access = string(&tokens, "access_token");
    assert!(core.accepts(&access).await);

    assert_error(
        core.exchange(&client_id, &code, &verifier).await,
        "invalid_grant",
        "the authorization code was already used; tokens issued from it are revoked",
    );
    assert!(!core.accepts(&access).await, "the replay revoked the grant");
}

#[tokio::test]
async fn a_code_expires_by_the_servers_clock() {
    let core = Core::with(config(|c| c.code_lifetime_secs = 60));
    let (client_id, code, verifier) = core.code().await;
    let (_, later_code, later_verifier) = core.code().await;
    core.advance(50);
    assert!(core.exchange(&client_id, &code, &verifier).await.is_ok());
    core.advance(10);
    assert_error(
        core.exchange(&client_id, &later_code, &later_verifier)
            .await,
        "invalid_grant",
        "the authorization code is invalid or expired",
    );
}

#[tokio::test]
async fn an_access_token_expires_and_its_refresh_token_outlives_it() {
    let core = Core::with(config(|c| {
        c.token_lifetime_secs = 600;
        c.refresh_token_lifetime_secs = 3_600;
    }));
    let client = core.connect().await;
    core.advance(600);
    assert!(!core.accepts(&client.access_token).await, "expired");
    let rotated = core
        .refresh(&client.client_id, &client.refresh_token)
        .await
        .unwrap();
    assert!(core.accepts(&string(&rotated, "access_token")).await);

    core.advance(3_600);
    assert_error(
        core.refresh(&client.client_id, &string(&rotated, "refresh_token"))
            .await,
        "invalid_grant",
        "the refresh token is invalid, expired or revoked",
    );
}

#[tokio::test]
async fn a_retry_within_the_grace_window_gets_the_same_pair_and_a_reuse_after_it_revokes() {
    let core = Core::with(config(|c| c.refresh_grace_secs = 60));
    let client = core.connect().await;
    let rotated = core
        .refresh(&client.client_id, &client.refresh_token)
        .await
        .unwrap();
    core.advance(30);
    let retried = core
        .refresh(&client.client_id, &client.refresh_token)
        .await
        .unwrap();
    assert_eq!(retried["access_token"], rotated["access_token"]);
    assert_eq!(retried["refresh_token"], rotated["refresh_token"]);
    // What is left of the pair's lifetime by the server's clock (which showed the system time
    // when the pair was issued: a second may have ticked before it was advanced).
    let left = retried["expires_in"].as_u64().unwrap();
    assert!((86_400 - 31..=86_400 - 30).contains(&left), "{left}");

    core.advance(31);
    assert_error(
        core.refresh(&client.client_id, &client.refresh_token).await,
        "invalid_grant",
        "the refresh token was already used; the grant is revoked, authorize again",
    );
    assert!(!core.accepts(&string(&rotated, "access_token")).await);
}
