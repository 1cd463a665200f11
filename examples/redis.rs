//! The layer on Redis: run several instances behind a load balancer and every one of them sees every
//! token, client, passkey, pending consent and passkey ceremony at once.
//!
//! ```text
//! redis-server --port 6379 --appendonly yes &
//! PORT=8080 cargo run --example redis --features redis &
//! PORT=8081 SERVER_URL=http://localhost:8080 cargo run --example redis --features redis
//! ```
//!
//! `REDIS_URL` (default `redis://127.0.0.1:6379/`), `PORT` (default 8080), `SERVER_URL` (the
//! public URL every instance shares, default `http://localhost:{PORT}`).

use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use axum::routing::post;
use mcp_oauth::{McpOAuth, OAuthConfig, RedisStore, TokenInfo};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let server_url =
        std::env::var("SERVER_URL").unwrap_or_else(|_| format!("http://localhost:{port}"));
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());

    // Reconnects by itself after an outage; meanwhile the endpoints answer 503, never 401.
    let store = RedisStore::connect(&redis_url)
        .await?
        .with_prefix("mcp-oauth-example:");
    let mut config = OAuthConfig::with_defaults(
        server_url,
        "redis-example",
        std::env::var("OAUTH_CLIENT_SECRET")
            .unwrap_or_else(|_| "change-me-to-a-real-secret".into()),
        "Redis example",
        "unused: passkeys are in Redis",
    );
    // Every instance must accept the same setup token, so configure one rather than have each
    // instance generate its own.
    config.setup_token = std::env::var("SETUP_TOKEN").ok();
    let oauth = McpOAuth::builder(config).stores(store).build()?;

    match oauth.setup_url().await? {
        Some(url) => println!("register a passkey: {url}"),
        None => println!("a passkey is registered (in Redis)"),
    }
    let mcp = Router::new().route(
        "/mcp",
        post(|caller: TokenInfo| async move { format!("hello, {}", caller.client_id) }),
    );
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    println!("instance on port {port}; MCP at {}", oauth.resource());
    axum::serve(
        listener,
        oauth
            .router(mcp)
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
