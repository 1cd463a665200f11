//! The official Rust MCP SDK as a machine client: rmcp's client-credentials support (SEP-1046)
//! discovers the server, gets a token with `grant_type=client_credentials` and its secret, and
//! speaks MCP with it; the token is a machine's, not the owner's. A dynamically registered client
//! asking rmcp for the same is refused `unauthorized_client`.
//!
//! Both of rmcp's ways to authenticate: its secret, and `private_key_jwt` (rmcp signs a fresh RS256
//! assertion with its own JOSE code, through its `auth-client-credentials-jwt` feature; no `kid` in
//! the header, five minutes to `exp`), against a machine client configured with the public key.

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, ClientCredentialsConfig, OAuthState};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use super::live::*;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mcp_oauth::MachineClient;
use rmcp::transport::auth::JwtSigningAlgorithm;

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

/// A fresh RSA key: its PKCS#8 PEM for rmcp to sign with, its public JWK set for the server.
fn rsa_key() -> (Vec<u8>, String) {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let der = pair.as_der().unwrap();
    let body = STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    let jwks = json!({ "keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e),
    }]});
    (pem.into_bytes(), jwks.to_string())
}

fn private_key_jwt_config(signing_key: Vec<u8>, resource: &str) -> ClientCredentialsConfig {
    ClientCredentialsConfig::PrivateKeyJwt {
        client_id: MACHINE_ID.to_owned(),
        signing_key,
        signing_algorithm: JwtSigningAlgorithm::RS256,
        token_endpoint_audience: None,
        scopes: vec!["mcp".to_owned()],
        resource: Some(resource.to_owned()),
    }
}

/// rmcp's manager after client_credentials, connected: the `whoami` tool's answer.
async fn whoami_with(server: &LiveServer, oauth: OAuthState) -> Value {
    let manager = oauth
        .into_authorization_manager()
        .expect("authorized after client_credentials");
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
    client.cancel().await.unwrap();
    let result = serde_json::to_value(result).unwrap();
    serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn rmcp_sdk_gets_a_machine_token_with_a_private_key_jwt_assertion_and_calls_a_tool() {
    let (signing_key, jwks) = rsa_key();
    let server = LiveServer::start(|config| {
        config.machine_clients = vec![MachineClient::with_jwks(MACHINE_ID, jwks, ["mcp"])];
    })
    .await;

    let mut oauth = OAuthState::new(server.mcp_url.as_str(), None)
        .await
        .unwrap();
    oauth
        .authenticate_client_credentials(private_key_jwt_config(signing_key, &server.mcp_url))
        .await
        .unwrap_or_else(|e| panic!("rmcp's private_key_jwt failed: {e}\n{}", server.trace()));
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
        token_request.form("client_assertion_type"),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    assert_eq!(token_request.form("client_secret"), None);

    let caller = whoami_with(&server, oauth).await;
    assert_eq!(caller["client_id"], MACHINE_ID);
    assert_eq!(caller["scopes"], json!(["mcp"]));
    assert_eq!(caller["approved_by_owner"], false, "{caller}");
}

#[tokio::test]
async fn rmcp_sdk_signing_with_a_key_the_machine_did_not_register_is_invalid_client() {
    let (_, registered) = rsa_key();
    let (other_key, _) = rsa_key();
    let server = LiveServer::start(|config| {
        config.machine_clients = vec![MachineClient::with_jwks(MACHINE_ID, registered, ["mcp"])];
    })
    .await;

    let mut oauth = OAuthState::new(server.mcp_url.as_str(), None)
        .await
        .unwrap();
    let error = oauth
        .authenticate_client_credentials(private_key_jwt_config(other_key, &server.mcp_url))
        .await
        .expect_err("an assertion signed with a foreign key got a token")
        .to_string();
    assert!(error.contains("invalid_client"), "{error}");
    let token_request = server
        .seen()
        .into_iter()
        .find(|s| s.is_token_grant("client_credentials"))
        .expect("rmcp's token request");
    assert_eq!(
        token_request.status,
        axum::http::StatusCode::UNAUTHORIZED,
        "{}",
        server.trace()
    );
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
