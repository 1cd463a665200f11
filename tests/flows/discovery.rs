//! RFC 9728 and RFC 8414 documents.

use axum::http::StatusCode;

use crate::common::*;

#[tokio::test]
async fn protected_resource_metadata_at_root_and_path_suffixed() {
    let server = TestServer::new().await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let doc = reply.json();
        assert_eq!(doc["resource"], RESOURCE);
        assert_eq!(doc["authorization_servers"][0], SERVER_URL);
        assert_eq!(doc["bearer_methods_supported"][0], "header");
        assert!(
            !doc["scopes_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "offline_access")
        );
    }
}

#[tokio::test]
async fn authorization_server_metadata_has_what_clients_require() {
    let server = TestServer::new().await;
    let doc = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(
        doc["issuer"], SERVER_URL,
        "byte-identical to the PRM entry and `iss`"
    );
    assert_eq!(
        doc["authorization_endpoint"],
        "http://localhost:8080/authorize"
    );
    assert_eq!(doc["token_endpoint"], "http://localhost:8080/token");
    assert_eq!(
        doc["registration_endpoint"],
        "http://localhost:8080/register"
    );
    assert_eq!(doc["revocation_endpoint"], "http://localhost:8080/revoke");
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        doc["grant_types_supported"],
        serde_json::json!(["authorization_code", "refresh_token"])
    );
    // Metadata document clients may sign assertions with the keys they publish, and registered
    // clients with the keys they register.
    let methods = serde_json::json!([
        "none",
        "client_secret_post",
        "client_secret_basic",
        "private_key_jwt"
    ]);
    assert_eq!(doc["token_endpoint_auth_methods_supported"], methods);
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
}

#[tokio::test]
async fn registration_endpoint_disappears_when_disabled() {
    let mut config = config();
    config.dynamic_registration = false;
    let server = TestServer::with_config(config).await;
    let doc = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert!(doc.get("registration_endpoint").is_none());
    let reply = server
        .post_json(
            "/register",
            &serde_json::json!({ "redirect_uris": [LOOPBACK_REDIRECT] }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}
