//! CORS for browser-based MCP clients (MCP Inspector in a browser, web SDK clients): the discovery,
//! registration, token and revocation endpoints and the MCP routes may be called cross-origin. No
//! cookies are involved, so any origin is allowed without credentials. The authorization endpoint
//! and the pages are top-level navigations and get no CORS (OAuth 2.1 §4.1: MUST NOT).

use std::time::Duration;

use axum::http::{HeaderName, Method, header};
use tower_http::cors::{Any, CorsLayer};

const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// For the OAuth endpoints a browser client calls with `fetch`.
pub(crate) fn oauth_endpoints() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            MCP_PROTOCOL_VERSION,
        ])
        .max_age(Duration::from_secs(86_400))
}

/// For the MCP routes: the transport's headers pass, and the ones a client must read are exposed
/// (without `WWW-Authenticate` a browser client cannot find the metadata from a 401).
pub(crate) fn mcp_routes() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            MCP_PROTOCOL_VERSION,
            MCP_SESSION_ID,
            MCP_METHOD,
            MCP_NAME,
            LAST_EVENT_ID,
        ])
        .expose_headers([
            header::WWW_AUTHENTICATE,
            MCP_SESSION_ID,
            MCP_PROTOCOL_VERSION,
        ])
        .max_age(Duration::from_secs(86_400))
}
