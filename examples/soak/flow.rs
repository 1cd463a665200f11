//! One client's life (register, authorize with the owner's passkey, redeem, call MCP, refresh, and
//! an ending), the history of the tokens it received, and the final check of that history.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_oauth::webauthn_rs::prelude::{RequestChallengeResponse, Url};
use serde_json::json;
use sha2::{Digest, Sha256};
use webauthn_authenticator_rs::WebauthnAuthenticator;

use crate::client::Answer;
use crate::server::Running;
use crate::tally::Tally;

const REDIRECT: &str = "http://127.0.0.1:9999/callback";
const REFRESHES: usize = 2;
const MCP_CALLS: usize = 2;

/// How a client's life ends, in turn.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Keeps its tokens.
    Live,
    /// Revokes its newest access token (RFC 7009): that token stops, the grant goes on.
    AccessRevoked,
    /// Revokes its refresh token: the whole grant stops.
    GrantRevoked,
    /// Presents a rotated-out refresh token: refused, and the grant is revoked as stolen.
    RefreshReused,
}

impl Ending {
    fn nth(n: usize) -> Self {
        [
            Self::Live,
            Self::AccessRevoked,
            Self::GrantRevoked,
            Self::RefreshReused,
        ][n % 4]
    }
}

/// Every token a client received, oldest first, and how its life ended.
#[derive(Debug)]
pub(crate) struct History {
    client_id: String,
    access: Vec<String>,
    refresh: Vec<String>,
    ending: Ending,
}

/// Checks an answer's status; on a mismatch records it and stops the flow.
fn want(tally: &Tally, step: &str, answer: &Answer, status: u16) -> Option<()> {
    if answer.status == status {
        return Some(());
    }
    tally.unexpected(format!(
        "{step}: {} instead of {status}: {}",
        answer.status,
        answer.text().chars().take(200).collect::<String>()
    ));
    None
}

/// Complete flows until the deadline.
pub(crate) async fn worker(
    server: &Running,
    tally: &Tally,
    deadline: Instant,
    worker: usize,
) -> Vec<History> {
    let mut histories = Vec::new();
    let mut n = worker;
    while Instant::now() < deadline {
        if let Some(history) = life(server, tally, Ending::nth(n)).await {
            tally.flow_done();
            histories.push(history);
        }
        n += 1;
    }
    histories
}

async fn life(server: &Running, tally: &Tally, ending: Ending) -> Option<History> {
    let client = &server.client;
    let registered = client
        .post_json(
            "/register",
            &json!({
                "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "client_name": "Soak client",
            }),
            tally,
        )
        .await;
    want(tally, "register", &registered, 201)?;
    let client_id = registered.json()["client_id"].as_str()?.to_owned();

    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "soak"),
            ("scope", "mcp"),
        ])
        .finish();
    let page = client.get(&format!("/authorize?{query}"), tally).await;
    want(tally, "authorize", &page, 200)?;
    let page = page.text();
    let marker = "data-request-id=\"";
    let start = page.find(marker)? + marker.len();
    let request_id = &page[start..start + page[start..].find('"')?];

    let ceremony = client
        .post_json(
            "/authorize/challenge",
            &json!({ "request_id": request_id }),
            tally,
        )
        .await;
    want(tally, "challenge", &ceremony, 200)?;
    let ceremony = ceremony.json();
    let options: RequestChallengeResponse =
        serde_json::from_value(ceremony["options"].clone()).ok()?;
    let credential = server
        .key
        .lock()
        .await
        .do_authentication(Url::parse(&client.origin).ok()?, options)
        .ok()?;
    let approved = client
        .post_json(
            "/authorize/approve",
            &json!({ "request_id": request_id, "ceremony_id": ceremony["ceremony_id"], "credential": credential }),
            tally,
        )
        .await;
    want(tally, "approve", &approved, 200)?;
    let redirect = Url::parse(approved.json()["redirect_to"].as_str()?).ok()?;
    let code = redirect
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())?;

    let tokens = client
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", &client_id),
                ("redirect_uri", REDIRECT),
            ],
            tally,
        )
        .await;
    want(tally, "token", &tokens, 200)?;
    let mut history = History {
        client_id,
        access: vec![tokens.json()["access_token"].as_str()?.to_owned()],
        refresh: vec![tokens.json()["refresh_token"].as_str()?.to_owned()],
        ending,
    };
    for round in 0..=REFRESHES {
        if round > 0 {
            let refreshed = refresh(server, tally, &history, history.refresh.last()?).await;
            want(tally, "refresh", &refreshed, 200)?;
            history
                .access
                .push(refreshed.json()["access_token"].as_str()?.to_owned());
            history
                .refresh
                .push(refreshed.json()["refresh_token"].as_str()?.to_owned());
        }
        for _ in 0..MCP_CALLS {
            let called = client.mcp(history.access.last()?, tally).await;
            want(tally, "mcp", &called, 200)?;
        }
    }
    end(server, tally, &history).await?;
    Some(history)
}

async fn refresh(server: &Running, tally: &Tally, history: &History, token: &str) -> Answer {
    server
        .client
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", &history.client_id),
            ],
            tally,
        )
        .await
}

async fn revoke(server: &Running, tally: &Tally, history: &History, token: &str) -> Answer {
    server
        .client
        .post_form(
            "/revoke",
            &[("token", token), ("client_id", &history.client_id)],
            tally,
        )
        .await
}

async fn end(server: &Running, tally: &Tally, history: &History) -> Option<()> {
    let newest_access = history.access.last()?;
    match history.ending {
        Ending::Live => return Some(()),
        Ending::AccessRevoked => {
            let revoked = revoke(server, tally, history, newest_access).await;
            want(tally, "revoke access", &revoked, 200)?;
        }
        Ending::GrantRevoked => {
            let revoked = revoke(server, tally, history, history.refresh.last()?).await;
            want(tally, "revoke refresh", &revoked, 200)?;
        }
        Ending::RefreshReused => {
            let reused = refresh(server, tally, history, &history.refresh[0]).await;
            want(tally, "reuse refresh", &reused, 400)?;
        }
    }
    let called = server.client.mcp(newest_access, tally).await;
    want(tally, "mcp after the ending", &called, 401)
}

/// After the load: every token answers as its history says.
pub(crate) async fn verify(server: &Running, history: &History, tally: &Tally) {
    let client = &server.client;
    let (live_access, refresh_works): (&[String], bool) = match history.ending {
        // Access tokens live until they expire, rotated or not; the newest refresh token rotates.
        Ending::Live => (&history.access, true),
        // Only the revoked one stops.
        Ending::AccessRevoked => (&history.access[..history.access.len() - 1], true),
        Ending::GrantRevoked | Ending::RefreshReused => (&[], false),
    };
    for (n, access) in history.access.iter().enumerate() {
        let expected = if n < live_access.len() { 200 } else { 401 };
        let called = client.mcp(access, tally).await;
        if want(
            tally,
            &format!("{:?}: access token {n}", history.ending),
            &called,
            expected,
        )
        .is_some()
        {
            tally.verified();
        }
    }
    // Rotated-out refresh tokens are checked only where the grant is already over: presenting one
    // ends a live grant, by design.
    let newest = history.refresh.len() - 1;
    let checked: Vec<usize> = if refresh_works {
        vec![newest]
    } else {
        (0..=newest).collect()
    };
    for n in checked {
        let expected = if refresh_works { 200 } else { 400 };
        let refreshed = refresh(server, tally, history, &history.refresh[n]).await;
        if want(
            tally,
            &format!("{:?}: refresh token {n}", history.ending),
            &refreshed,
            expected,
        )
        .is_some()
        {
            tally.verified();
        }
    }
}
