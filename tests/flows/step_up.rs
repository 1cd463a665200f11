//! Step-up scopes: per MCP method and tool scopes read from the JSON-RPC body, the one
//! `insufficient_scope` challenge naming them, re-authorization for the wider scope, and scope
//! descriptions on the consent page.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{Request, StatusCode};
use axum::routing::any;
use mcp_oauth::{Error, McpOAuth, OAuthConfig, ScopePolicy, TokenInfo};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};

use crate::common::*;

const PRM: &str = "http://localhost:8080/.well-known/oauth-protected-resource/mcp";
const ADMIN_DESCRIPTION: &str = "Delete repositories & manage <everything>";

fn step_up_config() -> OAuthConfig {
    let mut config = config();
    config.scopes = vec!["mcp".into(), "files:write".into(), "admin".into()];
    config
        .scope_descriptions
        .insert("admin".into(), ADMIN_DESCRIPTION.into());
    config
}

fn policy() -> ScopePolicy {
    ScopePolicy::new()
        .method("resources/write", ["files:write"])
        .tool("delete_repo", ["admin"])
        .implies("admin", ["files:write"])
        .max_body_bytes(4096)
}

/// The MCP stand-in: echoes the caller's scopes and the body exactly as it arrived.
fn echo_routes() -> Router {
    Router::new().route(
        "/mcp",
        any(|caller: TokenInfo, body: Bytes| async move {
            axum::Json(json!({
                "reached": true,
                "scopes": caller.scopes,
                "body": String::from_utf8_lossy(&body),
            }))
        }),
    )
}

/// A server with the step-up policy over `routes`, its owner's passkey registered.
async fn server_with(routes: Router) -> TestServer {
    let stores = Stores::memory();
    let oauth = stores
        .apply(McpOAuth::builder(step_up_config()).scope_policy(policy()))
        .build()
        .expect("build");
    let server = TestServer::serving(oauth, stores, routes);
    server.register_passkey(SETUP_TOKEN).await;
    server
}

/// Authorize `client_id` for `scope` (the owner approves with the soft passkey) and redeem the
/// code; returns the token response.
async fn authorize_for(server: &TestServer, client_id: &str, scope: &str) -> Value {
    let (verifier, challenge) = pkce();
    let query = format!(
        "{}&scope={}&resource={}",
        authorization_query(client_id, LOOPBACK_REDIRECT, &challenge),
        enc(scope),
        enc(RESOURCE)
    );
    let request_id = server
        .authorize(&query)
        .await
        .unwrap_or_else(|r| panic!("authorize: {}", r.text()));
    let redirect = server.approve(&request_id).await;
    let code = query_param(&redirect, "code").expect("code");
    let reply = server
        .exchange(client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

/// A fresh public client's access token for `scope`.
async fn token_for(server: &TestServer, scope: &str) -> String {
    let client_id = server.register_public_client().await;
    let tokens = authorize_for(server, &client_id, scope).await;
    assert_eq!(tokens["scope"], scope, "{tokens}");
    tokens["access_token"].as_str().unwrap().to_owned()
}

async fn post(
    server: &TestServer,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Reply {
    let mut request = Request::post("/mcp");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    server.send(request.body(body.into()).unwrap()).await
}

async fn rpc(server: &TestServer, token: &str, body: &str) -> Reply {
    post(
        server,
        Some(token),
        Some("application/json"),
        body.to_owned(),
    )
    .await
}

fn call(tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
        .to_string()
}

/// The body reached the service byte for byte.
#[track_caller]
fn assert_reached(reply: &Reply, body: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(echo["reached"], true);
    assert_eq!(echo["body"], body);
}

/// A 403 `insufficient_scope` whose one challenge names exactly `scope`.
#[track_caller]
fn assert_step_up(reply: &Reply, scope: &str) {
    reply.assert_oauth_error(403, "insufficient_scope");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(
            format!(
                "Bearer resource_metadata=\"{PRM}\", error=\"insufficient_scope\", scope=\"{scope}\""
            )
            .as_str()
        ),
    );
    assert_eq!(reply.headers.get_all("www-authenticate").iter().count(), 1);
}

/// The `scope` parameter of a challenge.
fn challenged_scope(reply: &Reply) -> String {
    let header = reply.header("www-authenticate").expect("challenge");
    let start = header.find("scope=\"").expect("scope=") + "scope=\"".len();
    let end = header[start..].find('"').unwrap() + start;
    header[start..end].to_owned()
}

#[tokio::test]
async fn a_tool_needing_a_missing_scope_is_403_with_one_exact_challenge() {
    let server = server_with(echo_routes()).await;
    let token = token_for(&server, "mcp").await;
    let reply = rpc(&server, &token, &call("delete_repo")).await;
    // Every scope the call needs plus the ones already held, so clients that replace their scopes
    // with the challenge's (2025-11-25 and earlier) keep what they had.
    assert_step_up(&reply, "mcp admin");
    let description = reply.json()["error_description"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(description.contains("admin"), "{description}");
    assert!(
        !description.contains("mcp"),
        "names what is missing: {description}"
    );
}

#[tokio::test]
async fn a_batch_needs_the_union_of_its_messages_scopes() {
    let server = server_with(echo_routes()).await;
    let narrow = token_for(&server, "mcp").await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "delete_repo"}},
        {"jsonrpc": "2.0", "id": 3, "method": "resources/write", "params": {"uri": "file:///a"}},
        {"jsonrpc": "2.0", "method": "notifications/progress"},
    ])
    .to_string();
    assert_step_up(
        &rpc(&server, &narrow, &batch).await,
        "mcp files:write admin",
    );

    // Holding only one of the two is still one challenge naming both.
    let writer = token_for(&server, "mcp files:write").await;
    assert_step_up(
        &rpc(&server, &writer, &batch).await,
        "mcp files:write admin",
    );

    // `admin` implies `files:write`: a hierarchy is honoured.
    let admin = token_for(&server, "mcp admin").await;
    assert_reached(&rpc(&server, &admin, &batch).await, &batch);
    let write = json!({"jsonrpc": "2.0", "id": 4, "method": "resources/write"}).to_string();
    assert_reached(&rpc(&server, &admin, &write).await, &write);
    assert_step_up(&rpc(&server, &narrow, &write).await, "mcp files:write");
}

#[tokio::test]
async fn baseline_calls_and_unlisted_tools_pass_with_the_default_scope() {
    let server = server_with(echo_routes()).await;
    let token = token_for(&server, "mcp").await;
    for body in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "whoami"}}),
        json!({"jsonrpc": "2.0", "id": 5, "method": "prompts/get", "params": {"name": "delete_repo"}}),
        json!({"jsonrpc": "2.0", "id": 6, "result": {}}),
        json!([]),
    ] {
        let body = body.to_string();
        assert_reached(&rpc(&server, &token, &body).await, &body);
    }
    // Bytes the policy reads are handed on untouched, whitespace, escapes and all.
    let odd = "  {\"jsonrpc\":\"2.0\",\"id\":7,\n \"method\":\"tools\\/list\",\"x\":\"\\u00e9\"}  ";
    assert_reached(&rpc(&server, &token, odd).await, odd);
}

#[tokio::test]
async fn malformed_json_gets_a_clean_400_and_never_reaches_the_service() {
    let server = server_with(echo_routes()).await;
    let token = token_for(&server, "mcp admin").await;
    for body in [
        "",
        "{",
        "{\"jsonrpc\":\"2.0\",\"method\":\"ping\"",
        "not json",
        "{\"method\":\"ping\"} {\"method\":\"tools/call\"}",
        "42",
        "[1, 2]",
        "{\"method\": 5}",
        // Parsers disagree on which duplicate wins, so duplicates are refused, not resolved.
        "{\"method\":\"ping\",\"method\":\"tools/call\",\"params\":{\"name\":\"delete_repo\"}}",
        "{\"method\":\"tools/call\",\"params\":{\"name\":\"whoami\",\"name\":\"delete_repo\"}}",
        "{\"method\":\"tools/call\",\"params\":\"delete_repo\"}",
    ] {
        let reply = rpc(&server, &token, body).await;
        reply.assert_oauth_error(400, "invalid_request");
        assert!(reply.header("www-authenticate").is_none(), "{body:?}");
        assert_ne!(reply.json()["reached"], true, "{body:?}");
    }
}

#[tokio::test]
async fn oversize_and_compressed_bodies_never_reach_the_service() {
    let server = server_with(echo_routes()).await;
    let token = token_for(&server, "mcp").await;
    let padding = "x".repeat(4096);
    let big =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"pad": padding}})
            .to_string();
    let reply = rpc(&server, &token, &big).await;
    reply.assert_oauth_error(413, "invalid_request");

    // Without a Content-Length the limit still holds, counted as the body streams in.
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .as_bytes()
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let streamed = post(
        &server,
        Some(&token),
        Some("application/json"),
        Body::from_stream(futures::stream::iter(chunks)),
    )
    .await;
    streamed.assert_oauth_error(413, "invalid_request");

    // Up to the limit is fine, streamed or not.
    let fits = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"pad": "x".repeat(3900)}})
        .to_string();
    assert!(fits.len() <= 4096);
    let chunks: Vec<Result<Bytes, std::io::Error>> = fits
        .as_bytes()
        .chunks(700)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let streamed = post(
        &server,
        Some(&token),
        Some("application/json"),
        Body::from_stream(futures::stream::iter(chunks)),
    )
    .await;
    assert_reached(&streamed, &fits);

    let gzip = server
        .send(
            Request::post("/mcp")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(Body::from(vec![0x1f, 0x8b, 0x08, 0x00]))
                .unwrap(),
        )
        .await;
    gzip.assert_oauth_error(415, "invalid_request");
}

#[tokio::test]
async fn anonymous_requests_are_401_before_any_body_is_read() {
    let server = server_with(echo_routes()).await;
    let huge = "x".repeat(100_000);
    let reply = post(&server, None, Some("application/json"), huge).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(format!("Bearer resource_metadata=\"{PRM}\", scope=\"mcp\"").as_str())
    );
}

#[tokio::test]
async fn other_methods_and_media_types_pass_unread() {
    let server = server_with(echo_routes()).await;
    let token = token_for(&server, "mcp").await;
    let get = server
        .send(
            Request::get("/mcp")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(get.status, StatusCode::OK, "{}", get.text());
    // An upload next to the MCP endpoint is not JSON-RPC: passed on, even past the policy's limit.
    let upload =
        "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n{\r\n--b--\r\n".repeat(100);
    let reply = post(
        &server,
        Some(&token),
        Some("multipart/form-data; boundary=b"),
        upload.clone(),
    )
    .await;
    assert_reached(&reply, &upload);
    // `application/…+json` is JSON, and is read.
    let reply = post(
        &server,
        Some(&token),
        Some("application/json-rpc+json; charset=utf-8"),
        call("delete_repo"),
    )
    .await;
    assert_step_up(&reply, "mcp admin");
}

#[tokio::test]
async fn the_transports_routing_headers_count_too() {
    let server = server_with(echo_routes()).await;
    let token = token_for(&server, "mcp").await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let reply = server
        .send(
            Request::post("/mcp")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "delete_repo")
                .body(Body::from(ping.clone()))
                .unwrap(),
        )
        .await;
    assert_step_up(&reply, "mcp admin");
    let reply = server
        .send(
            Request::post("/mcp")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .header("mcp-method", "ping")
                .body(Body::from(ping.clone()))
                .unwrap(),
        )
        .await;
    assert_reached(&reply, &ping);
}

#[tokio::test]
async fn route_and_method_scopes_make_one_challenge() {
    let stores = Stores::memory();
    let oauth = stores
        .apply(McpOAuth::builder(step_up_config()))
        .build()
        .unwrap();
    let guard = oauth
        .bearer_layer()
        .require_scopes(["files:write"])
        .scope_policy(policy());
    let routes = echo_routes().route_layer(guard);
    let server = TestServer::serving(oauth, stores, routes);
    server.register_passkey(SETUP_TOKEN).await;
    let token = token_for(&server, "mcp").await;
    assert_step_up(
        &rpc(&server, &token, &call("delete_repo")).await,
        "mcp files:write admin",
    );
}

#[tokio::test]
async fn a_policy_naming_an_unconfigured_scope_fails_the_build() {
    let built = McpOAuth::builder(step_up_config())
        .stores(mcp_oauth::MemoryStore::new())
        .scope_policy(ScopePolicy::new().tool("delete_repo", ["root"]))
        .build();
    match built {
        Err(Error::InvalidConfig { field, reason }) => {
            assert_eq!(field, "scope_policy");
            assert!(reason.contains("root"), "{reason}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[tokio::test]
async fn the_consent_page_describes_scopes_in_plain_words() {
    let server = server_with(echo_routes()).await;
    let client_id = server.register_public_client().await;
    let (_, challenge) = pkce();
    let query = format!(
        "{}&scope={}",
        authorization_query(&client_id, LOOPBACK_REDIRECT, &challenge),
        enc("mcp files:write admin")
    );
    let page = server.get(&format!("/authorize?{query}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    assert!(
        html.contains("<code>mcp</code> <span class=\"scope-description\">Use this MCP server"),
        "{html}"
    );
    assert!(html.contains("<code>files:write</code></li>"), "{html}");
    assert!(
        !html.contains("<everything>"),
        "descriptions are escaped: {html}"
    );
    assert!(
        html.contains("Delete repositories &#38; manage &#60;everything&#62;")
            || html.contains("Delete repositories &amp; manage &lt;everything&gt;"),
        "{html}"
    );
    for id in ["id=\"approve\"", "id=\"deny\""] {
        assert!(html.contains(id), "{id}");
    }
}

// End to end with a real MCP server: the narrow token connects and lists tools, is refused the
// admin tool with a challenge, the client authorizes again for the challenged scope, the owner
// approves with the passkey, and the wider token calls the tool.

#[derive(Clone)]
struct Repos {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Repos {
    #[tool(description = "Delete a repository (needs the admin scope).")]
    async fn delete_repo(&self, Extension(parts): Extension<Parts>) -> Result<String, ErrorData> {
        let scopes = parts
            .extensions
            .get::<TokenInfo>()
            .map(|info| info.scopes.join(" "))
            .ok_or_else(|| ErrorData::internal_error("no token info", None))?;
        Ok(format!("deleted by a token with {scopes}"))
    }

    #[tool(description = "Who is calling.")]
    async fn whoami(&self) -> Result<String, ErrorData> {
        Ok("someone".into())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Repos {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::test]
async fn reauthorizing_for_the_challenged_scope_unlocks_the_tool() {
    let server = server_with(rmcp_routes(|| Repos {
        tool_router: Repos::tool_router(),
    }))
    .await;
    let client_id = server.register_public_client().await;
    let narrow = authorize_for(&server, &client_id, "mcp").await;
    let narrow = narrow["access_token"].as_str().unwrap().to_owned();

    let init = server
        .rpc(
            &narrow,
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"}}}),
        )
        .await;
    assert_eq!(init.status, StatusCode::OK, "{}", init.text());
    let session = init.header("mcp-session-id").unwrap().to_owned();
    let initialized = server
        .rpc(
            &narrow,
            Some(&session),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
    assert!(initialized.status.is_success(), "{}", initialized.text());
    let list = server
        .rpc(
            &narrow,
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let tools = jsonrpc_message(&list)["result"]["tools"].clone();
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "delete_repo"),
        "{tools}"
    );

    let delete = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "delete_repo", "arguments": {}}});
    let refused = server.rpc(&narrow, Some(&session), delete.clone()).await;
    assert_step_up(&refused, "mcp admin");

    // The client asks for exactly what the challenge names; the owner approves once more.
    let wider = authorize_for(&server, &client_id, &challenged_scope(&refused)).await;
    assert_eq!(wider["scope"], "mcp admin");
    let wider = wider["access_token"].as_str().unwrap().to_owned();
    let done = server.rpc(&wider, Some(&session), delete).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    let result = jsonrpc_message(&done);
    assert_eq!(
        result["result"]["content"][0]["text"], "deleted by a token with mcp admin",
        "{result}"
    );

    // The narrow token still works for what it was granted.
    let whoami = server.rpc(
        &narrow,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}),
    )
    .await;
    assert_eq!(whoami.status, StatusCode::OK, "{}", whoami.text());
}
