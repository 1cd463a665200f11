//! The layer on SQLite: tokens, clients and passkeys survive restarts.
//!
//! ```text
//! cargo run --example sqlite --features sqlite
//! ```
//!
//! `DATABASE_URL` (default `sqlite://data/oauth.db`), `PORT` (default 8080).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use mcp_oauth::{McpOAuth, OAuthConfig, SqliteStore, TokenInfo};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let database =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://data/oauth.db".into());
    std::fs::create_dir_all("data")?;

    // Creates the file if needed and applies the migrations (in their own table).
    let store = SqliteStore::connect(&database).await?;
    let config = OAuthConfig::with_defaults(
        format!("http://localhost:{port}"),
        "sqlite-example",
        std::env::var("OAUTH_CLIENT_SECRET")
            .unwrap_or_else(|_| "change-me-to-a-real-secret".into()),
        "SQLite example",
        "unused: passkeys are in the database",
    );
    let oauth = McpOAuth::builder(config).stores(store).build()?;
    // Expired rows are invisible anyway; this reclaims their space.
    let sweeper = oauth.spawn_expiry_sweeper(Duration::from_secs(3600));

    match oauth.setup_url().await? {
        Some(url) => println!("register a passkey: {url}"),
        None => println!("a passkey is registered (in {database})"),
    }
    let mcp = Router::new().route(
        "/mcp",
        post(|caller: TokenInfo| async move { format!("hello, {}", caller.client_id) }),
    );
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    println!("MCP at {}", oauth.resource());
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
    sweeper.abort();
    Ok(())
}
