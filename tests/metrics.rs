//! Metrics, scraped as an operator would: a Prometheus recorder installed the way the demo does
//! it (`METRICS=1`), a `/metrics` route beside the layer, and after a complete flow (a passkey, a
//! registration, an approval, a code exchange, a refresh, MCP calls with a token, with none and
//! with a made-up one) each counter reads exactly what happened. Its own test binary: the
//! recorder is process-wide, so nothing else may run beside it.
#![cfg(feature = "memory")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "flows/common/mod.rs"]
mod common;

use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;

use common::*;

/// The value of the series `name{labels}` in a Prometheus text scrape.
fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{scrape}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn after_a_complete_flow_each_counter_reads_what_happened() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let mut server = TestServer::ready().await;
    server.app = server
        .app
        .route("/metrics", get(move || async move { handle.render() }));

    let (client_id, tokens) = server.connected_client().await;
    let access = access_token(&tokens);
    assert_eq!(server.mcp(Some(&access)).await.status, StatusCode::OK);
    assert_eq!(server.mcp(Some(&access)).await.status, StatusCode::OK);
    assert_eq!(server.mcp(None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        server.mcp(Some("mcp_at_made-up")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let refreshed = server.refresh(&client_id, &refresh_token(&tokens)).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());

    let scrape = server.get("/metrics").await.text();
    for (series, expected) in [
        (r#"mcp_oauth_guard_requests_total{outcome="accepted"}"#, 2.0),
        (r#"mcp_oauth_guard_requests_total{outcome="missing"}"#, 1.0),
        (r#"mcp_oauth_guard_requests_total{outcome="invalid"}"#, 1.0),
        (
            r#"mcp_oauth_tokens_issued_total{grant_type="authorization_code"}"#,
            1.0,
        ),
        (
            r#"mcp_oauth_tokens_issued_total{grant_type="refresh_token"}"#,
            1.0,
        ),
        (
            r#"mcp_oauth_authorizations_total{decision="approved"}"#,
            1.0,
        ),
        (r#"mcp_oauth_registrations_total{auth_method="none"}"#, 1.0),
    ] {
        assert_eq!(value(&scrape, series), expected, "{series}");
    }
    // Every token store operation is timed, labelled by backend and operation only.
    assert!(
        value(
            &scrape,
            r#"mcp_oauth_store_operation_seconds_count{store="token",backend="memory",operation="get"}"#
        ) >= 3.0,
        "{scrape}"
    );
    assert!(!scrape.contains(&client_id), "a client id became a label");
    assert!(!scrape.contains("mcp_oauth_store_errors_total"), "{scrape}");
}
