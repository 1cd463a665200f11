//! A real MCP server (rmcp's Streamable HTTP service) behind the layer: the guard lets the bearer
//! through, and the tool sees who is calling.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Request, StatusCode};
use mcp_oauth::TokenInfo;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use serde_json::json;

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

#[tokio::test]
async fn rmcp_tools_see_the_caller_through_the_guard() {
    let server = TestServer::with_routes(
        config(),
        rmcp_routes(|| Whoami {
            tool_router: Whoami::tool_router(),
        }),
    )
    .await;
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

    let init = server
        .rpc(
            token,
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"}}}),
        )
        .await;
    assert_eq!(init.status, StatusCode::OK, "{}", init.text());
    let session = init.header("mcp-session-id").unwrap().to_owned();
    assert!(jsonrpc_message(&init)["result"]["serverInfo"].is_object());

    let initialized = server
        .rpc(
            token,
            Some(&session),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
    assert!(initialized.status.is_success(), "{}", initialized.text());

    let call = server.rpc(
        token,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}),
    )
    .await;
    assert_eq!(call.status, StatusCode::OK, "{}", call.text());
    let result = jsonrpc_message(&call);
    assert_eq!(
        result["result"]["content"][0]["text"], client_id,
        "{result}"
    );
}
