//! The official Rust MCP SDK as the OAuth client: rmcp discovers, registers, builds the
//! authorization request with its own PKCE and state, exchanges the code, calls tools through its
//! authorized transport, and refreshes by itself when the access token expires.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{
    AuthClient, AuthorizationCallback, AuthorizationManager, AuthorizationRequest, OAuthState,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use url::Url;

use super::live::*;

/// Where rmcp is told the browser comes back to. Nothing listens there: the test reads the
/// redirect the consent page hands the browser and passes it to rmcp, as a callback server would.
const REDIRECT_URI: &str = "http://127.0.0.1:47931/callback";

/// rmcp's plain transport, no credentials: the reactive trigger of its OAuth flow.
async fn challenge_from_unauthenticated_connect(server: &LiveServer) -> String {
    let transport = StreamableHttpClientTransport::with_client(
        http_client(),
        StreamableHttpClientTransportConfig::with_uri(server.mcp_url.clone()),
    );
    match ().serve(transport).await {
        Ok(_) => panic!("an unauthenticated initialize was accepted"),
        Err(error) => error
            .auth_challenge()
            .unwrap_or_else(|| panic!("no challenge in {error:?}"))
            .to_owned(),
    }
}

/// The session's access token, as rmcp's credential store holds it.
async fn stored_access_token(client: &AuthClient<reqwest::Client>) -> String {
    let (_, token) = client
        .auth_manager
        .lock()
        .await
        .get_credentials()
        .await
        .unwrap();
    let token = serde_json::to_value(token.expect("rmcp holds a token")).unwrap();
    token["access_token"].as_str().unwrap().to_owned()
}

/// After the browser part: hand the redirect to rmcp (it checks state and `iss` and exchanges the
/// code with its PKCE verifier), then connect with the authorized transport and `initialize`.
async fn complete_and_connect(
    server: &LiveServer,
    mut oauth: OAuthState,
    redirect: &Url,
) -> (RunningService<RoleClient, ()>, AuthClient<reqwest::Client>) {
    let callback = AuthorizationCallback::from_redirect_url(redirect.as_str()).unwrap();
    assert_eq!(callback.issuer.as_deref(), Some(server.url.as_str()));
    oauth
        .handle_callback_with_issuer(
            &callback.code,
            &callback.csrf_token,
            callback.issuer.as_deref(),
        )
        .await
        .unwrap_or_else(|e| panic!("rmcp's code exchange failed: {e}\n{}", server.trace()));
    let manager: AuthorizationManager = oauth
        .into_authorization_manager()
        .expect("authorized after the callback");
    let auth_client = AuthClient::new(http_client(), manager);
    let transport = StreamableHttpClientTransport::with_client(
        auth_client.clone(),
        StreamableHttpClientTransportConfig::with_uri(server.mcp_url.clone()),
    );
    let client = ()
        .serve(transport)
        .await
        .unwrap_or_else(|e| panic!("authorized initialize failed: {e}\n{}", server.trace()));
    (client, auth_client)
}

async fn call_whoami(server: &LiveServer, client: &RunningService<RoleClient, ()>) -> Value {
    let result = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap_or_else(|e| panic!("tools/call whoami failed: {e}\n{}", server.trace()));
    let result = serde_json::to_value(result).unwrap();
    assert_ne!(result["isError"], true, "{result}");
    let text = result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content: {result}"));
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn rmcp_sdk_discovers_registers_authorizes_calls_and_refreshes_by_itself() {
    const LIFETIME_SECS: u64 = 3;
    let server = LiveServer::start(|config| config.token_lifetime_secs = LIFETIME_SECS).await;

    // 1. rmcp connects without credentials; the 401's challenge starts its OAuth flow.
    let challenge = challenge_from_unauthenticated_connect(&server).await;
    assert_eq!(
        challenge_param(&challenge, "resource_metadata").as_deref(),
        Some(
            server
                .url("/.well-known/oauth-protected-resource/mcp")
                .as_str()
        ),
        "{challenge}"
    );

    // 2. rmcp's discovery (challenge -> PRM -> AS metadata), dynamic registration, and its
    //    authorization URL with its own PKCE challenge and state.
    let mut oauth = OAuthState::new(server.mcp_url.as_str(), None)
        .await
        .unwrap();
    oauth
        .start_authorization(
            AuthorizationRequest::new(REDIRECT_URI)
                .with_client_name("rmcp live test")
                .with_challenge(challenge),
        )
        .await
        .unwrap_or_else(|e| panic!("rmcp's start_authorization failed: {e}\n{}", server.trace()));
    let (client_id, no_token) = oauth.get_credentials().await.unwrap();
    assert!(no_token.is_none());
    let authorization_url = Url::parse(&oauth.get_authorization_url().await.unwrap()).unwrap();

    let seen = server.seen();
    assert_eq!(
        seen.iter().map(Seen::line).collect::<Vec<_>>(),
        [
            "POST /mcp 401",
            "GET /.well-known/oauth-protected-resource/mcp 200",
            "GET /.well-known/oauth-authorization-server 200",
            "POST /register 201",
        ],
        "rmcp's discovery and registration"
    );
    let registration = seen[3].registration.clone().unwrap();
    assert_eq!(registration["token_endpoint_auth_method"], "none");
    assert_eq!(
        registration["redirect_uris"],
        serde_json::json!([REDIRECT_URI])
    );
    assert_eq!(registration["client_name"], "rmcp live test");

    assert_eq!(
        authorization_url.as_str().split('?').next(),
        Some(server.url("/authorize").as_str())
    );
    let param = |name| query_param(&authorization_url, name);
    assert_eq!(param("response_type").as_deref(), Some("code"));
    assert_eq!(param("client_id").as_deref(), Some(client_id.as_str()));
    assert_eq!(param("redirect_uri").as_deref(), Some(REDIRECT_URI));
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param("code_challenge").map(|c| c.len()), Some(43));
    assert_eq!(param("resource").as_deref(), Some(server.mcp_url.as_str()));
    assert_eq!(param("scope").as_deref(), Some("mcp"));
    let state = param("state").expect("rmcp sends a state");

    // 3. The browser: consent page, owner's passkey, redirect with code, state and iss.
    let redirect = server.approve_in_browser(authorization_url.as_str()).await;
    assert!(redirect.as_str().starts_with(REDIRECT_URI), "{redirect}");
    assert_eq!(
        query_param(&redirect, "state").as_deref(),
        Some(state.as_str())
    );

    // 4. rmcp exchanges the code, then speaks MCP through its authorized transport.
    let (client, tokens) = complete_and_connect(&server, oauth, &redirect).await;
    let exchange = server
        .seen()
        .into_iter()
        .find(|s| s.is_token_grant("authorization_code"))
        .expect("rmcp's code exchange");
    assert_eq!(exchange.status, StatusCode::OK);
    assert_eq!(exchange.form("client_id"), Some(client_id.as_str()));
    assert_eq!(exchange.form("resource"), Some(server.mcp_url.as_str()));
    assert_eq!(exchange.form("redirect_uri"), Some(REDIRECT_URI));
    assert_eq!(exchange.form("code_verifier").map(str::len), Some(43));
    assert_eq!(exchange.auth_scheme, None, "a public client");
    let token_received = Instant::now();

    let info = client.peer_info().expect("initialized");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some(SERVER_NAME)
    );
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "whoami"), "{tools:?}");
    let first = call_whoami(&server, &client).await;
    assert_eq!(first["client_id"], client_id.as_str());
    assert_eq!(first["scopes"], serde_json::json!(["mcp"]));
    let first_token = stored_access_token(&tokens).await;
    assert!(
        !server
            .seen()
            .iter()
            .any(|s| s.is_token_grant("refresh_token")),
        "no refresh before expiry:\n{}",
        server.trace()
    );
    let mcp_calls = server
        .seen()
        .iter()
        .filter(|s| s.method == Method::POST && s.path == "/mcp" && s.auth_scheme.is_some())
        .map(|s| s.rpc_method.clone().unwrap_or_default())
        .collect::<Vec<_>>();
    for method in [
        "initialize",
        "notifications/initialized",
        "tools/list",
        "tools/call",
    ] {
        assert!(
            mcp_calls.iter().any(|m| m == method),
            "{method}: {mcp_calls:?}"
        );
    }

    // 5. The access token expires; rmcp refreshes on its own and the next call goes through.
    tokio::time::sleep(
        Duration::from_secs(LIFETIME_SECS + 1).saturating_sub(token_received.elapsed()),
    )
    .await;
    let seen_before = server.seen().len();
    let second = call_whoami(&server, &client).await;
    assert_eq!(second["client_id"], client_id.as_str());
    assert!(
        second["expires_at"].as_u64() > first["expires_at"].as_u64(),
        "a new access token: {first} then {second}"
    );
    let second_token = stored_access_token(&tokens).await;
    assert_ne!(first_token, second_token, "rmcp stored a new access token");

    let after = &server.seen()[seen_before..];
    let refreshes: Vec<&Seen> = after
        .iter()
        .filter(|s| s.is_token_grant("refresh_token"))
        .collect();
    assert_eq!(refreshes.len(), 1, "one refresh:\n{}", server.trace());
    let refresh = refreshes[0];
    assert_eq!(refresh.status, StatusCode::OK);
    assert_eq!(refresh.form("client_id"), Some(client_id.as_str()));
    assert_eq!(refresh.form("resource"), Some(server.mcp_url.as_str()));
    // Proactive: rmcp saw the expiry in its own records and refreshed before calling, so the
    // server never had to turn the expired token away.
    assert!(
        !after
            .iter()
            .any(|s| s.path == "/mcp" && s.status == StatusCode::UNAUTHORIZED),
        "{}",
        server.trace()
    );

    // The server is stateless (as the demo): no session to end, so closing sends no DELETE
    // (every method on /mcp is guarded alike: `flows::outside_review_architecture`).
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn rmcp_sdk_with_the_pre_registered_confidential_client() {
    let server = LiveServer::start(|_| {}).await;
    let challenge = challenge_from_unauthenticated_connect(&server).await;

    let mut oauth = OAuthState::new(server.mcp_url.as_str(), None)
        .await
        .unwrap();
    oauth
        .start_authorization(
            AuthorizationRequest::new(REDIRECT_URI)
                .with_preregistered_client(CLIENT_ID)
                .with_client_secret(CLIENT_SECRET)
                .with_challenge(challenge),
        )
        .await
        .unwrap_or_else(|e| panic!("rmcp's start_authorization failed: {e}\n{}", server.trace()));
    let authorization_url = oauth.get_authorization_url().await.unwrap();
    assert!(
        !server.seen().iter().any(|s| s.path == "/register"),
        "a pre-registered client does not register:\n{}",
        server.trace()
    );

    let redirect = server.approve_in_browser(&authorization_url).await;
    let (client, _) = complete_and_connect(&server, oauth, &redirect).await;
    let exchange = server
        .seen()
        .into_iter()
        .find(|s| s.is_token_grant("authorization_code"))
        .unwrap();
    // The metadata lists client_secret_basic, so rmcp (oauth2-rs) sends the secret in the header.
    assert_eq!(exchange.auth_scheme.as_deref(), Some("Basic"));
    assert_eq!(exchange.form("client_secret"), None);

    assert_eq!(call_whoami(&server, &client).await["client_id"], CLIENT_ID);
    client.cancel().await.unwrap();
}
