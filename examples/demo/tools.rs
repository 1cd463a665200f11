//! The demo's MCP server: three tools, served by rmcp on the stateless Streamable HTTP transport
//! with JSON responses. The load benchmark (`examples/bench_server.rs`) serves this same server.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::request::Parts;
use mcp_oauth::TokenInfo;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Json, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Stateless Streamable HTTP with JSON responses (MCP 2026-07-28): every request stands alone,
/// so one client's requests never queue on a session. Clients of older revisions keep working:
/// their `initialize` gets no `Mcp-Session-Id`, so they send none, and a stale one is ignored.
/// rmcp answers only requests whose `Host` is in `allowed_hosts` (DNS-rebinding protection).
pub(crate) fn transport_config(allowed_hosts: Vec<String>) -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts)
        .with_legacy_session_mode(false)
        .with_json_response(true)
}

/// The demo server on that transport, to be nested at `/mcp`.
pub(crate) fn mcp_service(
    config: StreamableHttpServerConfig,
) -> StreamableHttpService<Demo, NeverSessionManager> {
    StreamableHttpService::new(
        || Ok(Demo::new()),
        Arc::new(NeverSessionManager::default()),
        config,
    )
}

/// The demo MCP server.
#[derive(Clone)]
pub(crate) struct Demo {
    tool_router: ToolRouter<Self>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct AddRequest {
    /// The first number.
    a: f64,
    /// The second number.
    b: f64,
}

#[derive(Serialize, schemars::JsonSchema)]
struct Sum {
    /// a + b
    sum: f64,
}

#[derive(Serialize, schemars::JsonSchema)]
struct Caller {
    /// The OAuth client the access token was issued to.
    client_id: String,
    /// The scopes the token carries.
    scopes: Vec<String>,
    /// When the access token expires, in seconds since the Unix epoch.
    expires_at: u64,
    /// Seconds until the access token expires.
    expires_in_secs: u64,
}

#[derive(Serialize, schemars::JsonSchema)]
struct Time {
    /// The current time in UTC, RFC 3339.
    utc: String,
    /// Seconds since the Unix epoch.
    unix: u64,
}

#[tool_router]
impl Demo {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Who is calling: the OAuth client id, the granted scopes and when the access token expires."
    )]
    async fn whoami(&self, Extension(parts): Extension<Parts>) -> Result<Json<Caller>, ErrorData> {
        // The bearer guard put the token's details into the HTTP request; rmcp hands tools the
        // request's parts.
        let info = parts.extensions.get::<TokenInfo>().ok_or_else(|| {
            ErrorData::internal_error(
                "no token information: is /mcp behind the OAuth guard?",
                None,
            )
        })?;
        let expires_at = info.expires_at.0;
        Ok(Json(Caller {
            client_id: info.client_id.clone(),
            scopes: info.scopes.clone(),
            expires_at,
            expires_in_secs: expires_at.saturating_sub(unix_now()),
        }))
    }

    #[tool(description = "Add two numbers.")]
    async fn add(&self, Parameters(AddRequest { a, b }): Parameters<AddRequest>) -> Json<Sum> {
        Json(Sum { sum: a + b })
    }

    #[tool(description = "The server's current time, in UTC.")]
    async fn server_time(&self) -> Json<Time> {
        let now = OffsetDateTime::now_utc();
        Json(Time {
            utc: now.format(&Rfc3339).unwrap_or_default(),
            unix: u64::try_from(now.unix_timestamp()).unwrap_or(0),
        })
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Demo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-oauth-demo", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "A demo server protected by mcp-oauth. Tools: whoami (your OAuth client and token), \
                 add (two numbers), server_time (UTC).",
            )
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
