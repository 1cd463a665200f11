//! Property tests: whatever arrives at an endpoint, the answer is a success the rules allow or a
//! well-formed 4xx, never a 5xx or a panic.

use std::sync::LazyLock;

use axum::body::Body;
use axum::http::{HeaderValue, Request};
use proptest::prelude::*;
use serde_json::Value;

use crate::common::*;

/// One server for every case: building one per case would test the builder, not the endpoints.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
});
static SERVER: LazyLock<TestServer> = LazyLock::new(|| {
    RUNTIME.block_on(async {
        let mut config = config();
        config.rate_limits.enabled = false;
        let server = TestServer::with_config(config).await;
        server.register_passkey(SETUP_TOKEN).await;
        server
    })
});

fn send(request: Request<Body>) -> Reply {
    RUNTIME.block_on(SERVER.send(request))
}

#[track_caller]
fn assert_json_4xx(reply: &Reply, allowed: &[&str]) {
    assert!(
        reply.status.is_client_error(),
        "{} {}",
        reply.status,
        reply.text()
    );
    let body: Value = serde_json::from_slice(&reply.body).expect("JSON error body");
    let code = body["error"].as_str().expect("error code");
    assert!(allowed.contains(&code), "unexpected error code {code}");
    assert!(body["error_description"].is_string());
    // RFC 6749 §5.2: printable ASCII only, no quote or backslash.
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'),
        "{description:?}"
    );
}

const TOKEN_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
];

fn form_request(path: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

/// Parameters the token endpoint knows, with hostile values.
fn token_params() -> impl Strategy<Value = Vec<(String, String)>> {
    let names = prop::sample::select(vec![
        "grant_type",
        "code",
        "code_verifier",
        "client_id",
        "client_secret",
        "refresh_token",
        "redirect_uri",
        "resource",
        "scope",
        "token",
        "token_type_hint",
    ]);
    let values = prop_oneof![
        Just("authorization_code".to_owned()),
        Just("refresh_token".to_owned()),
        Just(CLIENT_ID.to_owned()),
        Just(CLIENT_SECRET.to_owned()),
        Just("".to_owned()),
        ".{0,80}",
        "[A-Za-z0-9._~-]{40,130}",
    ];
    prop::collection::vec((names.prop_map(str::to_owned), values), 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn token_endpoint_answers_any_bytes_with_a_json_4xx(body in prop::collection::vec(any::<u8>(), 0..512)) {
        for path in ["/token", "/revoke", "/introspect"] {
            let reply = send(form_request(path, body.clone()));
            if reply.status.is_success() {
                continue; // /revoke answers 200 for unknown tokens of an authenticated client
            }
            assert_json_4xx(&reply, TOKEN_ERRORS);
        }
    }

    #[test]
    fn token_endpoint_answers_any_parameters_with_a_json_4xx(params in token_params()) {
        let body = form(&params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
        let reply = send(form_request("/token", body.into_bytes()));
        assert_json_4xx(&reply, TOKEN_ERRORS);
    }

    #[test]
    fn registration_answers_any_json(metadata in arbitrary_json()) {
        let request = Request::post("/register")
            .header("content-type", "application/json")
            .body(Body::from(metadata.to_string()))
            .unwrap();
        let reply = send(request);
        if reply.status.as_u16() != 201 {
            assert_json_4xx(&reply, &["invalid_redirect_uri", "invalid_client_metadata"]);
        }
    }

    #[test]
    fn authorization_endpoint_answers_any_query_with_a_page_never_a_redirect(query in ".{0,300}") {
        let uri = format!("/authorize?{}", enc(&query).replace("%3D", "=").replace("%26", "&"));
        let Ok(request) = Request::get(uri).body(Body::empty()) else { return Ok(()) };
        let reply = send(request);
        prop_assert!(reply.status.as_u16() == 200 || reply.status.as_u16() == 400, "{}", reply.status);
        prop_assert!(reply.header("location").is_none());
        prop_assert!(reply.header("content-type").unwrap_or_default().starts_with("text/html"));
    }

    #[test]
    fn the_guard_lets_no_made_up_credential_through(header in prop::collection::vec(any::<u8>(), 0..200)) {
        let Ok(value) = HeaderValue::from_bytes(&header) else { return Ok(()) };
        let request = Request::post("/mcp").header("authorization", value).body(Body::empty()).unwrap();
        let reply = send(request);
        prop_assert!(reply.status.as_u16() == 401 || reply.status.as_u16() == 400, "{}", reply.status);
        prop_assert!(reply.header("www-authenticate").unwrap_or_default().starts_with("Bearer resource_metadata="));
    }

    #[test]
    fn page_endpoints_answer_any_json_with_a_json_4xx(body in arbitrary_json()) {
        for path in ["/authorize/challenge", "/authorize/approve", "/authorize/deny", "/passkey/register/start", "/passkey/register/finish"] {
            let request = Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let reply = send(request);
            assert_json_4xx(&reply, &["invalid_request", "access_denied"]);
        }
    }
}

/// JSON of any shape, with strings that look like what the endpoints expect now and then.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        Just(Value::String(LOOPBACK_REDIRECT.to_owned())),
        Just(Value::String("none".to_owned())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let keys = prop::sample::select(vec![
            "redirect_uris",
            "token_endpoint_auth_method",
            "grant_types",
            "response_types",
            "client_name",
            "scope",
            "application_type",
            "request_id",
            "ceremony_id",
            "credential",
            "setup_token",
            "approval",
            "label",
            "x",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.prop_map(str::to_owned), inner, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}
