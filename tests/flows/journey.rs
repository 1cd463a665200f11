//! The whole journey a real client makes, end to end.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn discovery_registration_approval_tokens_mcp_refresh() {
    let server = TestServer::new().await;

    // 1. An MCP client calls without a token and learns where the metadata is.
    let unauthorized = server.mcp(None).await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    let challenge = unauthorized.header("www-authenticate").unwrap().to_owned();
    let prm_url = "http://localhost:8080/.well-known/oauth-protected-resource/mcp";
    assert!(
        challenge.contains(&format!("resource_metadata=\"{prm_url}\"")),
        "{challenge}"
    );

    // 2. Discovery.
    let prm = server
        .get("/.well-known/oauth-protected-resource/mcp")
        .await
        .json();
    assert_eq!(prm["resource"], RESOURCE);
    let issuer = prm["authorization_servers"][0].as_str().unwrap().to_owned();
    let metadata = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(metadata["issuer"], issuer);

    // 3. The owner registers a passkey with the setup token.
    let registered = server.register_passkey(SETUP_TOKEN).await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.text());
    assert_eq!(registered.json()["status"], "registered");

    // 4. Dynamic registration, authorization, approval with the passkey.
    let client = server
        .register_client(json!({
            "redirect_uris": ["http://127.0.0.1/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "client_name": "Journey Client",
        }))
        .await;
    let client_id = client["client_id"].as_str().unwrap();
    assert!(client.get("client_secret").is_none());
    let (verifier, challenge) = pkce();
    let redirect_uri = "http://127.0.0.1:53682/callback";
    let request_id = server
        .authorize(&format!(
            "response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={challenge}\
             &code_challenge_method=S256&state=opaque-state&scope=mcp&resource={}",
            enc(redirect_uri),
            enc(RESOURCE)
        ))
        .await
        .unwrap();
    let redirect = server.approve(&request_id).await;
    assert!(redirect.as_str().starts_with(redirect_uri));
    assert_eq!(
        query_param(&redirect, "state").as_deref(),
        Some("opaque-state")
    );
    assert_eq!(
        query_param(&redirect, "iss").as_deref(),
        Some(issuer.as_str())
    );
    let code = query_param(&redirect, "code").unwrap();

    // 5. Code for tokens.
    let tokens = server
        .exchange(client_id, &code, &verifier, redirect_uri)
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    assert_eq!(tokens.header("cache-control"), Some("no-store"));
    let tokens = tokens.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "mcp");
    assert_eq!(tokens["expires_in"], 86_400);
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    // 6. The MCP call, and who the handler sees.
    let call = server.mcp(Some(access)).await;
    assert_eq!(call.status, StatusCode::OK, "{}", call.text());
    assert_eq!(call.json()["client_id"], client_id);
    assert_eq!(call.json()["scopes"], json!(["mcp"]));

    // 7. Refresh, and the new token works.
    let refreshed = server.refresh(client_id, refresh).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    let refreshed = refreshed.json();
    assert_ne!(refreshed["refresh_token"], tokens["refresh_token"]);
    let call = server
        .mcp(Some(refreshed["access_token"].as_str().unwrap()))
        .await;
    assert_eq!(call.status, StatusCode::OK);
}

#[tokio::test]
async fn pre_registered_confidential_client_with_client_secret_post() {
    // Claude.ai's "advanced settings": a static client id and secret, secret in the body.
    let server = TestServer::ready().await;
    let (code, verifier) = server.code_for(CLIENT_ID, CLAUDE_REDIRECT).await;
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("redirect_uri", CLAUDE_REDIRECT),
            ]),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let refresh = reply.json()["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ]),
            &[],
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
}

#[tokio::test]
async fn dynamic_confidential_client_with_client_secret_basic() {
    let server = TestServer::ready().await;
    let client = server
        .register_client(json!({
            "redirect_uris": [CLAUDE_REDIRECT],
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code", "refresh_token"],
        }))
        .await;
    let client_id = client["client_id"].as_str().unwrap();
    let secret = client["client_secret"].as_str().unwrap();
    let (code, verifier) = server.code_for(client_id, CLAUDE_REDIRECT).await;
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
            ]),
            &[("authorization", &basic(client_id, secret))],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let call = server
        .mcp(Some(reply.json()["access_token"].as_str().unwrap()))
        .await;
    assert_eq!(call.status, StatusCode::OK);
}

#[tokio::test]
async fn claude_dcr_request_shape_with_client_secret_post() {
    // The body Claude.ai sent in 2026-09 (spec-checklist §6.1), then its authorize shape.
    let server = TestServer::ready().await;
    let client = server
        .register_client(json!({
            "client_name": "Claude",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_post",
            "scope": "claudeai",
            "redirect_uris": [CLAUDE_REDIRECT]
        }))
        .await;
    assert_eq!(client["token_endpoint_auth_method"], "client_secret_post");
    let client_id = client["client_id"].as_str().unwrap();
    let secret = client["client_secret"].as_str().unwrap();
    let (verifier, challenge) = pkce();
    let request_id = server
        .authorize(&format!(
            "response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={challenge}\
             &code_challenge_method=S256&state=s&scope=%20offline_access&resource={}&prompt=consent",
            enc(CLAUDE_REDIRECT),
            enc("http://localhost:8080/mcp/")
        ))
        .await
        .unwrap();
    let redirect = server.approve(&request_id).await;
    let code = query_param(&redirect, "code").unwrap();
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", client_id),
                ("client_secret", secret),
                ("redirect_uri", CLAUDE_REDIRECT),
                ("resource", "http://localhost:8080/mcp/"),
            ]),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["scope"], "mcp");
}
