//! The official Rust MCP SDK as a machine client: rmcp's client-credentials support (SEP-1046)
//! discovers the server, gets a token with `grant_type=client_credentials` and its secret, and
//! speaks MCP with it; the token is a machine's, not the owner's. A dynamically registered client
//! asking rmcp for the same is refused `unauthorized_client`.
//!
//! rmcp's `private_key_jwt` variant needs its `auth-client-credentials-jwt` feature, which pulls
//! a second major version of `jsonwebtoken`; the flow tests sign assertions for machine clients
//! instead (`tests/flows/machine_clients.rs`).

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, ClientCredentialsConfig, OAuthState};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use super::live::*;
use mcp_oauth::MachineClient;

const MACHINE_ID: &str = "rmcp-machine";
const MACHINE_SECRET: &str = "rmcp-machine-secret-0123456789";

fn secret_config(client_id: &str, secret: &str, resource: &str) -> ClientCredentialsConfig {
    ClientCredentialsConfig::ClientSecret {
        client_id: client_id.to_owned(),
        client_secret: secret.to_owned(),
        scopes: vec!["mcp".to_owned()],
        resource: Some(resource.to_owned()),
    }
}

#[tokio::test]
async fn rmcp_sdk_gets_a_machine_token_with_client_credentials_and_calls_a_tool() {
    let server = LiveServer::start(|config| {
        config.machine_clients = vec![MachineClient::with_secret(
            MACHINE_ID,
            MACHINE_SECRET,
            ["mcp"],
        )];
    })
    .await;

    let mut oauth = OAuthState::new(server.mcp_url.as_str(), None)
        .await
        .unwrap();
    oauth
        .authenticate_client_credentials(secret_config(MACHINE_ID, MACHINE_SECRET, &server.mcp_url))
        .await
        .unwrap_or_else(|e| panic!("rmcp's client_credentials failed: {e}\n{}", server.trace()));
    let token_request = server
        .seen()
        .into_iter()
        .find(|s| s.is_token_grant("client_credentials"))
        .expect("rmcp's token request");
    assert_eq!(
        token_request.status,
        axum::http::StatusCode::OK,
        "{}",
        server.trace()
    );
    assert_eq!(
        token_request.form("resource"),
        Some(server.mcp_url.as_str())
    );

    let manager = oauth
        .into_authorization_manager()
        .expect("authorized after client_credentials");
    let (_, token) = manager.get_credentials().await.unwrap();
    let token = serde_json::to_value(token.expect("rmcp holds a token")).unwrap();
    assert!(
        token.get("refresh_token").is_none_or(Value::is_null),
        "no refresh token for client_credentials: {token}"
    );

    let transport = StreamableHttpClientTransport::with_client(
        AuthClient::new(http_client(), manager),
        StreamableHttpClientTransportConfig::with_uri(server.mcp_url.clone()),
    );
    let client = ()
        .serve(transport)
        .await
        .unwrap_or_else(|e| panic!("authorized initialize failed: {e}\n{}", server.trace()));
    let result = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap_or_else(|e| panic!("tools/call whoami failed: {e}\n{}", server.trace()));
    let result = serde_json::to_value(result).unwrap();
    let caller: Value =
        serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(caller["client_id"], MACHINE_ID);
    assert_eq!(caller["scopes"], json!(["mcp"]));
    assert_eq!(caller["approved_by_owner"], false, "{caller}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn rmcp_sdk_client_credentials_for_a_registered_client_is_unauthorized_client() {
    let server = LiveServer::start(|config| {
        config.machine_clients = vec![MachineClient::with_secret(
            MACHINE_ID,
            MACHINE_SECRET,
            ["mcp"],
        )];
    })
    .await;
    let registered = server
        .post_json(
            &server.url("/register"),
            &json!({
                "redirect_uris": ["http://127.0.0.1:47931/callback"],
                "token_endpoint_auth_method": "client_secret_post",
                "grant_types": ["authorization_code", "refresh_token"],
                "client_name": "registered, not a machine",
            }),
            &[],
        )
        .await
        .expect(201)
        .json();

    let mut oauth = OAuthState::new(server.mcp_url.as_str(), None)
        .await
        .unwrap();
    let refused = oauth
        .authenticate_client_credentials(secret_config(
            registered["client_id"].as_str().unwrap(),
            registered["client_secret"].as_str().unwrap(),
            &server.mcp_url,
        ))
        .await;
    let error = refused
        .expect_err("a registered client got a machine token")
        .to_string();
    assert!(error.contains("unauthorized_client"), "{error}");
    let token_request = server
        .seen()
        .into_iter()
        .find(|s| s.is_token_grant("client_credentials"))
        .expect("rmcp's token request");
    assert_eq!(
        token_request.status,
        axum::http::StatusCode::BAD_REQUEST,
        "{}",
        server.trace()
    );
}
