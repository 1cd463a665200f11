//! The authorization endpoint: a request is validated, kept pending for the owner's decision
//! until its consent lifetime ends, and decided once.

use super::{Core, REDIRECT, assert_error, config};
use crate::oauth::Rejection;

#[tokio::test]
async fn a_request_for_an_unknown_client_or_another_redirect_is_refused_on_the_page() {
    let core = Core::new();
    let client_id = core.register_public_client().await;
    for query in [
        "response_type=code&client_id=nobody&code_challenge_method=S256".to_owned(),
        format!("response_type=code&client_id={client_id}&redirect_uri=http://127.0.0.1:1/other"),
    ] {
        match core.server.begin_authorization(query.as_bytes()).await {
            Err(Rejection::Page(error)) => assert_eq!(error.code.as_str(), "invalid_request"),
            other => panic!("{query}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_request_without_pkce_is_sent_back_to_the_client_with_its_state() {
    let core = Core::new();
    let client_id = core.register_public_client().await;
    let query = format!("response_type=code&client_id={client_id}&state=xyz");
    match core.server.begin_authorization(query.as_bytes()).await {
        Err(Rejection::Link { error, redirect_to }) => {
            assert_eq!(error.code.as_str(), "invalid_request");
            let url = url::Url::parse(&redirect_to).unwrap();
            assert!(redirect_to.starts_with(REDIRECT), "{redirect_to}");
            let pairs: Vec<_> = url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            assert!(
                pairs.contains(&("error".into(), "invalid_request".into())),
                "{pairs:?}"
            );
            assert!(pairs.contains(&("state".into(), "xyz".into())), "{pairs:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_pending_request_lives_its_consent_lifetime() {
    let core = Core::with(config(|c| c.consent_lifetime_secs = 600));
    let client_id = core.register_public_client().await;
    let (request_id, _) = core.pending_request(&client_id).await;
    core.advance(590);
    assert!(core.server.pending_request(&request_id).await.is_ok());
    core.advance(10);
    let expired = "this request has expired; start again from the application";
    assert_error(
        core.server.pending_request(&request_id).await,
        "invalid_request",
        expired,
    );
    assert_error(core.approve(&request_id).await, "invalid_request", expired);
}

#[tokio::test]
async fn a_request_is_decided_once() {
    let core = Core::new();
    let client_id = core.register_public_client().await;
    let (request_id, _) = core.pending_request(&client_id).await;
    assert!(core.approve(&request_id).await.is_ok());
    let decided = "this request was already decided; start again from the application";
    assert_error(core.approve(&request_id).await, "invalid_request", decided);
    assert_error(
        core.server.deny(&request_id).await,
        "invalid_request",
        decided,
    );
}

#[tokio::test]
async fn a_registration_that_lapsed_while_its_request_waited_is_not_approved() {
    let core = Core::with(config(|c| {
        c.unapproved_client_lifetime_secs = 600;
        c.consent_lifetime_secs = 600;
    }));
    let client_id = core.register_public_client().await;
    core.advance(300);
    let (request_id, _) = core.pending_request(&client_id).await;
    core.advance(300);
    assert_error(
        core.approve(&request_id).await,
        "invalid_request",
        "this client's registration lapsed or was removed before the approval; \
         start again from the application",
    );
}
