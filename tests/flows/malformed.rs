//! Malformed input on every endpoint: a clear 4xx, never a panic or a 500.

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::common::*;

const FORM_ENDPOINTS: [&str; 2] = ["/token", "/revoke"];
const JSON_ENDPOINTS: [&str; 7] = [
    "/register",
    "/authorize/challenge",
    "/authorize/approve",
    "/authorize/deny",
    "/passkey/register/approval",
    "/passkey/register/start",
    "/passkey/register/finish",
];

async fn post(server: &TestServer, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
    let request = Request::post(path)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    server.send(request).await
}

#[track_caller]
fn assert_clear_4xx(reply: &Reply, what: &str) {
    assert!(
        reply.status.is_client_error(),
        "{what}: {} {}",
        reply.status,
        reply.text()
    );
    let body = reply.json();
    assert!(
        body["error"].is_string() && body["error_description"].is_string(),
        "{what}: {body}"
    );
}

#[tokio::test]
async fn wrong_content_type_bad_encoding_and_missing_fields() {
    let server = TestServer::ready().await;
    for path in FORM_ENDPOINTS {
        assert_clear_4xx(
            &post(&server, path, "application/json", b"{}".to_vec()).await,
            path,
        );
        assert_clear_4xx(
            &post(
                &server,
                path,
                "application/x-www-form-urlencoded",
                vec![0xff, 0xfe, b'='],
            )
            .await,
            path,
        );
        assert_clear_4xx(
            &post(
                &server,
                path,
                "application/x-www-form-urlencoded",
                b"".to_vec(),
            )
            .await,
            path,
        );
        assert_clear_4xx(
            &post(
                &server,
                path,
                "application/x-www-form-urlencoded",
                b"%%%&&&===".to_vec(),
            )
            .await,
            path,
        );
        assert_clear_4xx(
            &post(
                &server,
                path,
                "application/x-www-form-urlencoded",
                b"grant_type=a&grant_type=b".to_vec(),
            )
            .await,
            path,
        );
        let no_type = server
            .send(Request::post(path).body(Body::from("a=b")).unwrap())
            .await;
        assert_clear_4xx(&no_type, path);
    }
    for path in JSON_ENDPOINTS {
        for body in [
            &b"{"[..],
            b"not json",
            b"[]",
            b"{\"request_id\": 5}",
            b"null",
            b"{\"ceremony_id\": \"x\", \"credential\": {}}",
        ] {
            let reply = post(&server, path, "application/json", body.to_vec()).await;
            // /passkey/register/approval takes no input and answers a valid challenge.
            if path == "/passkey/register/approval" && reply.status == StatusCode::OK {
                continue;
            }
            assert_clear_4xx(&reply, path);
        }
        assert_clear_4xx(
            &post(&server, path, "text/plain", b"{}".to_vec()).await,
            path,
        );
    }
}

#[tokio::test]
async fn oversize_bodies_are_413() {
    let server = TestServer::ready().await;
    let big = vec![b'a'; 200 * 1024];
    for path in FORM_ENDPOINTS {
        let reply = post(
            &server,
            path,
            "application/x-www-form-urlencoded",
            big.clone(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert_clear_4xx(&reply, path);
    }
    for path in JSON_ENDPOINTS {
        let reply = post(&server, path, "application/json", big.clone()).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
    }
}

#[tokio::test]
async fn deeply_nested_json_is_a_4xx() {
    let server = TestServer::ready().await;
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    for path in JSON_ENDPOINTS {
        let reply = post(
            &server,
            path,
            "application/json",
            nested.clone().into_bytes(),
        )
        .await;
        if path == "/passkey/register/approval" && reply.status == StatusCode::OK {
            continue;
        }
        assert!(reply.status.is_client_error(), "{path}: {}", reply.status);
    }
}

#[tokio::test]
async fn hostile_authorize_queries_get_an_error_page() {
    let server = TestServer::ready().await;
    for query in [
        "",
        "client_id=%FF%FE",
        "client_id=a&client_id=b",
        &format!("client_id={}", "x".repeat(10_000)),
        "response_type=code&client_id=claude-static&redirect_uri=%00",
        "state=%0d%0aSet-Cookie:%20x=y&client_id=claude-static",
    ] {
        let reply = server.get(&format!("/authorize?{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(reply.header("set-cookie").is_none());
    }
}

#[tokio::test]
async fn malformed_passkey_payloads_are_refused_cleanly() {
    let server = TestServer::ready().await;
    let start = server
        .post_json("/passkey/register/approval", &serde_json::json!({}))
        .await
        .json();
    let bad_credentials = [
        serde_json::json!({}),
        serde_json::json!({ "id": "x", "rawId": "!!", "type": "public-key", "response": {} }),
        serde_json::json!({ "id": "x", "rawId": "AAAA", "type": "public-key",
            "response": { "authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA", "userHandle": null } }),
    ];
    for credential in bad_credentials {
        let reply = server
            .post_json(
                "/passkey/register/start",
                &serde_json::json!({ "approval": { "ceremony_id": start["ceremony_id"], "credential": credential } }),
            )
            .await;
        assert_clear_4xx(&reply, "start");
    }
}
