//! Behind a reverse proxy on a real socket: the proxy on 127.0.0.1 reaches a server listening on
//! `[::]` (dual stack, so the peer is `::ffff:127.0.0.1`) or on `127.0.0.1`; either way each
//! forwarded client has its own budget, and a hop written in IPv4-mapped form is the same address.
//! Behind a proxy that is not trusted, every client is the proxy: the operator is warned, once.

use std::net::SocketAddr;

use mcp_oauth::{FailureLimit, McpOAuth};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;
use crate::secrets::Capture;

/// The layer behind a proxy on loopback, with a failure budget of two, served on `bind`.
async fn serve_behind_proxy(bind: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let mut config = config();
    config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    config.rate_limits.failures = FailureLimit {
        max_failures: 2,
        window_secs: 600,
    };
    let app = McpOAuth::builder(config)
        .build()
        .unwrap()
        .router(mcp_routes());
    let listener = TcpListener::bind(bind).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    // The proxy connects over IPv4 loopback, whatever the server listens on.
    (SocketAddr::from(([127, 0, 0, 1], port)), task)
}

/// A wrong client secret at `/token`, as the proxy forwards it; the status of the answer.
async fn wrong_secret(server: SocketAddr, forwarded_for: &str) -> u16 {
    let body = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", "x"),
        ("client_id", CLIENT_ID),
        ("client_secret", "wrong-guess-wrong-guess"),
    ]);
    let request = format!(
        "POST /token HTTP/1.1\r\nHost: localhost:8080\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         X-Forwarded-For: {forwarded_for}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status_line = response.lines().next().unwrap_or_default();
    status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

#[tokio::test]
async fn forwarded_clients_are_keyed_apart_on_both_stacks() {
    for bind in ["[::]:0", "127.0.0.1:0"] {
        let (server, task) = serve_behind_proxy(bind).await;
        // One forwarded client spends its budget...
        for _ in 0..2 {
            assert_eq!(wrong_secret(server, "198.51.100.1").await, 401, "{bind}");
        }
        assert_eq!(wrong_secret(server, "198.51.100.1").await, 429, "{bind}");
        // ...another behind the same proxy still has its own.
        assert_eq!(
            wrong_secret(server, "198.51.100.2").await,
            401,
            "{bind}: a second forwarded client was keyed to the proxy"
        );
        // A proxy hop written in IPv4-mapped form is still the trusted proxy, and a client written
        // that way is still the same client.
        assert_eq!(
            wrong_secret(server, "198.51.100.1, ::ffff:127.0.0.5").await,
            429,
            "{bind}: a mapped proxy hop was taken for the client"
        );
        assert_eq!(
            wrong_secret(server, "::ffff:198.51.100.1").await,
            429,
            "{bind}: a mapped client address escaped its budget"
        );
        task.abort();
    }
}

/// A request to `/token` forwarded for `client`, from `server`'s peer.
async fn forwarded(server: &TestServer, client: &str) -> Reply {
    let request = axum::http::Request::post("/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", client)
        .body(axum::body::Body::from(form(&[(
            "grant_type",
            "refresh_token",
        )])))
        .unwrap();
    server.send(request).await
}

/// The warnings about an untrusted proxy in `capture`.
fn proxy_warnings(capture: &Capture) -> usize {
    String::from_utf8_lossy(&capture.0.lock().unwrap())
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("trusted_proxies"))
        .count()
}

#[tokio::test]
async fn forwarded_requests_from_loopback_without_trusted_proxies_are_warned_of_once() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // No warning for a client that is not on loopback, nor without the header.
    let mut server = TestServer::new().await;
    server.peer = "203.0.113.9:40000".parse().unwrap();
    forwarded(&server, "198.51.100.1").await;
    server.peer = "127.0.0.1:40000".parse().unwrap();
    server.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(proxy_warnings(&capture), 0);

    // A proxy on loopback that is not trusted: every client is the proxy. Said once, not per request.
    for i in 0..20 {
        forwarded(&server, &format!("198.51.100.{i}")).await;
    }
    server.peer = "[::ffff:127.0.0.1]:40000".parse().unwrap();
    forwarded(&server, "198.51.100.1").await;
    assert_eq!(
        proxy_warnings(&capture),
        1,
        "forwarding by a loopback proxy that is not trusted is warned of once, not per request"
    );

    // Trusted, it is what the operator meant: no warning.
    let mut config = config();
    config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let server = TestServer::with_config(config).await;
    forwarded(&server, "198.51.100.1").await;
    assert_eq!(proxy_warnings(&capture), 1);
}
