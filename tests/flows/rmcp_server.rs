//! A real MCP server (rmcp's Streamable HTTP service) behind the layer: the guard lets the bearer
//! through, and the tool sees who is calling.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Request, StatusCode};
use mcp_oauth::TokenInfo;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};

use crate::common::*;

#[derive(Clone)]
struct Whoami {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Whoami {
    #[tool(description = "The calling OAuth client.")]
    async fn whoami(&self, Extension(parts): Extension<Parts>) -> Result<String, ErrorData> {
        parts
            .extensions
            .get::<TokenInfo>()
            .map(|info| info.client_id.clone())
            .ok_or_else(|| ErrorData::internal_error("no token info", None))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Whoami {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

fn routes() -> Router {
    let service = StreamableHttpService::new(
        || {
            Ok(Whoami {
                tool_router: Whoami::tool_router(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    Router::new().nest_service("/mcp", service)
}

async fn rpc(server: &TestServer, token: &str, session: Option<&str>, body: Value) -> Reply {
    let mut request = Request::post("/mcp")
        .header("host", "localhost:8080")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    server
        .send(request.body(Body::from(body.to_string())).unwrap())
        .await
}

/// The JSON-RPC message in an SSE or JSON response body.
fn message(reply: &Reply) -> Value {
    let text = reply.text();
    let json = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .find(|data| data.starts_with('{'))
        .unwrap_or(text.trim());
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn rmcp_tools_see_the_caller_through_the_guard() {
    let server = TestServer::with_routes(config(), routes()).await;
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;
    let token = tokens["access_token"].as_str().unwrap();

    let unauthenticated = server
        .send(
            Request::post("/mcp")
                .header("host", "localhost:8080")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);

    let init = rpc(
        &server,
        token,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"}}}),
    )
    .await;
    assert_eq!(init.status, StatusCode::OK, "{}", init.text());
    let session = init.header("mcp-session-id").unwrap().to_owned();
    assert!(message(&init)["result"]["serverInfo"].is_object());

    let initialized = rpc(
        &server,
        token,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert!(initialized.status.is_success(), "{}", initialized.text());

    let call = rpc(
        &server,
        token,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}),
    )
    .await;
    assert_eq!(call.status, StatusCode::OK, "{}", call.text());
    let result = message(&call);
    assert_eq!(
        result["result"]["content"][0]["text"], client_id,
        "{result}"
    );
}
