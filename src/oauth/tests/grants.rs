//! Grants: each approval is listed for the owner while its tokens can live, and revoking it ends
//! every token it issued.

use super::{Core, RESOURCE, config};
use crate::store::GrantId;

#[tokio::test]
async fn an_approval_is_listed_and_revoking_it_ends_its_tokens() {
    let core = Core::new();
    let client = core.connect().await;
    let grants = core.server.list_grants().await.unwrap();
    let [(grant_id, summary)] = grants.as_slice() else {
        panic!("one grant: {grants:?}");
    };
    assert_eq!(summary.client_id, client.client_id);
    assert_eq!(summary.scopes, ["mcp"]);
    assert_eq!(summary.resource, RESOURCE);

    assert!(core.server.revoke_grant(grant_id).await.unwrap() > 0);
    assert!(core.server.list_grants().await.unwrap().is_empty());
    assert!(!core.accepts(&client.access_token).await);
    assert!(
        core.refresh(&client.client_id, &client.refresh_token)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn revoking_a_grant_nobody_holds_removes_nothing() {
    let core = Core::new();
    core.connect().await;
    let unknown = GrantId::generate();
    assert_eq!(core.server.revoke_grant(&unknown).await.unwrap(), 0);
    assert_eq!(core.server.list_grants().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_approved_code_is_listed_as_long_as_it_can_be_exchanged() {
    let core = Core::with(config(|c| c.code_lifetime_secs = 60));
    core.code().await;
    core.advance(50);
    assert_eq!(core.server.list_grants().await.unwrap().len(), 1);
    core.advance(10);
    assert!(core.server.list_grants().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_grant_is_listed_until_its_last_token_expires() {
    let core = Core::with(config(|c| {
        c.token_lifetime_secs = 600;
        c.refresh_token_lifetime_secs = 3_600;
    }));
    core.connect().await;
    core.advance(600);
    let grants = core.server.list_grants().await.unwrap();
    assert_eq!(grants.len(), 1, "its refresh token still lives");
    core.advance(3_000);
    assert!(core.server.list_grants().await.unwrap().is_empty());
}
