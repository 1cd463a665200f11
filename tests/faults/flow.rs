//! Complete connections that report the first failing status instead of panicking, and a tally of
//! every status seen, for servers whose backend is failing on purpose.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

/// Every status a load saw, by code.
#[derive(Debug, Default)]
pub(crate) struct Statuses(Mutex<BTreeMap<u16, u64>>);

impl Statuses {
    pub(crate) fn note(&self, status: StatusCode) -> StatusCode {
        *self.0.lock().unwrap().entry(status.as_u16()).or_default() += 1;
        status
    }

    pub(crate) fn count(&self, status: u16) -> u64 {
        self.0.lock().unwrap().get(&status).copied().unwrap_or(0)
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<u16, u64> {
        self.0.lock().unwrap().clone()
    }

    /// Every status is a success or a 503: no 401 (clients would drop their tokens), no 500, no
    /// other error.
    #[track_caller]
    pub(crate) fn assert_only_success_or_503(&self) {
        let seen = self.snapshot();
        assert!(
            seen.keys().all(|s| matches!(s, 200 | 201 | 503)),
            "statuses seen: {seen:?}"
        );
    }
}

/// A client holding tokens, and the grant they belong to.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub(crate) client_id: String,
    pub(crate) access: String,
    pub(crate) refresh: String,
    pub(crate) grant_id: String,
}

fn expect(seen: &Statuses, reply: &Reply, wanted: StatusCode) -> Result<(), StatusCode> {
    match seen.note(reply.status) {
        status if status == wanted => Ok(()),
        status => Err(status),
    }
}

/// Register, authorize, approve with the owner's passkey, redeem the code, call MCP once.
pub(crate) async fn connect(
    server: &TestServer,
    seen: &Statuses,
) -> Result<Connection, StatusCode> {
    let registered = server
        .post_json(
            "/register",
            &json!({
                "redirect_uris": [LOOPBACK_REDIRECT],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
            }),
        )
        .await;
    expect(seen, &registered, StatusCode::CREATED)?;
    let client_id = registered.json()["client_id"].as_str().unwrap().to_owned();
    let (verifier, challenge) = pkce();
    let request_id = match server
        .authorize(&authorization_query(
            &client_id,
            LOOPBACK_REDIRECT,
            &challenge,
        ))
        .await
    {
        Ok(id) => {
            seen.note(StatusCode::OK);
            id
        }
        Err(reply) => return Err(seen.note(reply.status)),
    };
    let challenge = server
        .post_json("/authorize/challenge", &json!({ "request_id": request_id }))
        .await;
    expect(seen, &challenge, StatusCode::OK)?;
    let challenge = challenge.json();
    let credential = server.assert_with(&server.key, &challenge).await;
    let approved = server
        .post_json(
            "/authorize/approve",
            &json!({ "request_id": request_id, "ceremony_id": challenge["ceremony_id"], "credential": credential }),
        )
        .await;
    expect(seen, &approved, StatusCode::OK)?;
    let redirect = url::Url::parse(approved.json()["redirect_to"].as_str().unwrap()).unwrap();
    let code = query_param(&redirect, "code").unwrap();
    let tokens = server
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await;
    expect(seen, &tokens, StatusCode::OK)?;
    let tokens = tokens.json();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let called = server.mcp(Some(&access)).await;
    expect(seen, &called, StatusCode::OK)?;
    Ok(Connection {
        client_id,
        access,
        refresh: tokens["refresh_token"].as_str().unwrap().to_owned(),
        grant_id: called.json()["grant_id"].as_str().unwrap().to_owned(),
    })
}

/// Rotate a connection's refresh token and call MCP with the new access token.
pub(crate) async fn refresh(
    server: &TestServer,
    connection: &Connection,
    seen: &Statuses,
) -> Result<Connection, StatusCode> {
    let reply = server
        .refresh(&connection.client_id, &connection.refresh)
        .await;
    expect(seen, &reply, StatusCode::OK)?;
    let tokens = reply.json();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let called = server.mcp(Some(&access)).await;
    expect(seen, &called, StatusCode::OK)?;
    Ok(Connection {
        access,
        refresh: tokens["refresh_token"].as_str().unwrap().to_owned(),
        ..connection.clone()
    })
}

/// A configuration without rate limits: the load comes from one address on purpose.
pub(crate) fn unlimited_config() -> mcp_oauth::OAuthConfig {
    let mut config = config();
    config.rate_limits.enabled = false;
    config
}
