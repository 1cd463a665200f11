//! The layer on PostgreSQL: run several instances behind a load balancer and every one of them sees
//! every token, client, passkey, pending consent and passkey ceremony at once; everything survives
//! restarts.
//!
//! ```text
//! createdb mcp_oauth
//! PORT=8080 DATABASE_URL=postgres://localhost/mcp_oauth cargo run --example postgres --features postgres &
//! PORT=8081 SERVER_URL=http://localhost:8080 DATABASE_URL=postgres://localhost/mcp_oauth \
//!     cargo run --example postgres --features postgres
//! ```
//!
//! `DATABASE_URL` (default `postgres://localhost/mcp_oauth`), `PORT` (default 8080), `SERVER_URL`
//! (the public URL every instance shares, default `http://localhost:{PORT}`), `SETUP_TOKEN` (one
//! setup token every instance accepts).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use mcp_oauth::{McpOAuth, OAuthConfig, PostgresStore, TokenInfo};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let server_url =
        std::env::var("SERVER_URL").unwrap_or_else(|_| format!("http://localhost:{port}"));
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://localhost/mcp_oauth".into());

    // Applies the migrations (instances starting together apply them once). After an outage the
    // pool reconnects by itself; meanwhile the endpoints answer 503, never 401.
    let store = PostgresStore::connect(&database_url).await?;
    let mut config = OAuthConfig::with_defaults(
        server_url,
        "postgres-example",
        std::env::var("OAUTH_CLIENT_SECRET")
            .unwrap_or_else(|_| "change-me-to-a-real-secret".into()),
        "PostgreSQL example",
        "unused: passkeys are in PostgreSQL",
    );
    // Every instance must accept the same setup token, so configure one rather than have each
    // instance generate its own.
    config.setup_token = std::env::var("SETUP_TOKEN").ok();
    let oauth = McpOAuth::builder(config).stores(store).build()?;
    // Reads never return expired rows; this purges them now and then.
    let _sweeper = oauth.spawn_expiry_sweeper(Duration::from_secs(600));

    match oauth.setup_url().await? {
        Some(url) => println!("register a passkey: {url}"),
        None => println!("a passkey is registered (in PostgreSQL)"),
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
