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

/// A public client with tokens, made once on the shared server: (client id, access token).
static CONNECTED: LazyLock<(String, String)> = LazyLock::new(|| {
    let server = &*SERVER; // built outside `block_on`: its own initialiser blocks on the runtime
    let (client_id, tokens) = RUNTIME.block_on(server.connected_client());
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    (client_id, access)
});

/// RFC 7636 §4.1, stated apart from the implementation.
fn is_verifier_syntax(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The redirect URI rules (RFC 9700 §2.1, RFC 8252 §7.3), stated apart from the implementation:
/// `https` with a host, or `http` on a loopback host; no fragment, credentials or whitespace; or
/// one of the configured private-use URIs exactly.
fn is_registrable(uri: &str) -> bool {
    if mcp_oauth::config::DEFAULT_NATIVE_REDIRECT_URIS.contains(&uri) {
        return true;
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) || uri.contains('#') {
        return false;
    }
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    url.username().is_empty()
        && url.password().is_none()
        && (url.scheme() == "https" && url.host().is_some() || url.scheme() == "http" && loopback)
}

/// Redirect URIs near the edges of the rules: schemes, look-alike hosts, credentials, ports,
/// fragments, whitespace.
fn redirect_uris() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        3 => Just("https"),
        3 => Just("http"),
        1 => prop::sample::select(vec!["HTTP", "javascript", "data", "file", "cursor"]),
    ];
    let userinfo = prop_oneof![
        6 => Just(""),
        1 => prop::sample::select(vec!["user@", "user:pw@", "@"]),
    ];
    let host = prop::sample::select(vec![
        "localhost",
        "LocalHost",
        "127.0.0.1",
        "[::1]",
        "127.0.0.2",
        "localhost.evil.example",
        "client.example.com",
        "client.example.com.",
        "",
    ]);
    let port = prop::option::of(any::<u16>());
    let path = "(/[a-z%20.]{0,6}){0,2}";
    let tail = prop_oneof![
        4 => Just(""),
        1 => prop::sample::select(vec!["?x=1", "#frag", " ", "\t", "%0a"]),
    ];
    (scheme, userinfo, host, port, path, tail).prop_map(
        |(scheme, userinfo, host, port, path, tail)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://{userinfo}{host}{port}{path}{tail}")
        },
    )
}

/// A requested redirect URI made from a registered one: the same, another port, or a look-alike.
fn variant_of(registered: &str, change: u8, port: u16) -> String {
    match change % 6 {
        0 => registered.to_owned(),
        1 => {
            let mut url = url::Url::parse(registered);
            match url.as_mut().map(|url| url.set_port(Some(port))) {
                Ok(Ok(())) => url.map(String::from).unwrap_or_default(),
                _ => registered.to_owned(),
            }
        }
        2 => format!("{registered}/"),
        3 => registered.to_uppercase(),
        4 => registered.replacen("://", "://evil.example@", 1),
        _ => format!("{registered}#x"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn only_the_challenge_verifier_redeems_a_code(
        wrong in prop_oneof!["[A-Za-z0-9._~-]{43,128}", ".{0,140}"]
    ) {
        let (client, _) = &*CONNECTED;
        let server = &*SERVER;
        let (code, verifier) = RUNTIME.block_on(server.code_for(client, LOOPBACK_REDIRECT));
        prop_assume!(wrong != verifier);
        let refused = RUNTIME.block_on(server.exchange(client, &code, &wrong, LOOPBACK_REDIRECT));
        let expected = if is_verifier_syntax(&wrong) { "invalid_grant" } else { "invalid_request" };
        assert_json_4xx(&refused, &[expected]);
        // A wrong verifier does not burn the code (a thief without it cannot lock the owner out);
        // the right one redeems it, once.
        let reply = RUNTIME.block_on(server.exchange(client, &code, &verifier, LOOPBACK_REDIRECT));
        prop_assert_eq!(reply.status.as_u16(), 200, "{}", reply.text());
        let replay = RUNTIME.block_on(server.exchange(client, &code, &verifier, LOOPBACK_REDIRECT));
        assert_json_4xx(&replay, &["invalid_grant"]);
    }

    #[test]
    fn registration_takes_exactly_the_redirect_uris_the_rules_allow(
        uri in redirect_uris(),
        change in any::<u8>(),
        port in 1u16..,
    ) {
        let request = Request::post("/register")
            .header("content-type", "application/json")
            .body(Body::from(serde_json::json!({
                "redirect_uris": [uri],
                "token_endpoint_auth_method": "none",
            }).to_string()))
            .unwrap();
        let reply = send(request);
        if !is_registrable(&uri) {
            assert_json_4xx(&reply, &["invalid_redirect_uri"]);
            return Ok(());
        }
        prop_assert_eq!(reply.status.as_u16(), 201, "{:?}: {}", uri, reply.text());
        let client_id = reply.json()["client_id"].as_str().unwrap().to_owned();

        // The consent page appears only for the registered URI, or (loopback http) the same URI on
        // another port; anything else gets an error page and no way to the URI.
        let requested = variant_of(&uri, change, port);
        let (_, challenge) = pkce();
        let query = authorization_query(&client_id, &requested, &challenge);
        let consent = RUNTIME.block_on(SERVER.authorize(&query));
        let port_only = match (url::Url::parse(&uri), url::Url::parse(&requested)) {
            (Ok(mut reg), Ok(mut req)) => {
                let loopback = matches!(reg.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
                let canonical = req.as_str() == requested;
                let _ = (reg.set_port(None), req.set_port(None));
                reg.scheme() == "http" && loopback && canonical && reg == req
            }
            _ => false,
        };
        prop_assert_eq!(consent.is_ok(), requested == uri || port_only, "{:?} for {:?}", requested, uri);
    }

    #[test]
    fn the_guard_takes_the_token_only_in_a_well_formed_bearer_header(
        scheme in prop::sample::select(vec!["Bearer", "bearer", "BEARER", "Basic", "Bearer:", "Token", ""]),
        spaces in 0usize..3,
        before in prop_oneof![3 => Just(String::new()), 1 => "[ -~]{1,3}"],
        after in prop_oneof![3 => Just(String::new()), 1 => "[ -~]{1,3}"],
    ) {
        let (_, token) = &*CONNECTED;
        let value = format!("{scheme}{}{before}{token}{after}", " ".repeat(spaces));
        let Ok(header) = HeaderValue::from_str(&value) else { return Ok(()) };
        let request = Request::post("/mcp").header("authorization", header).body(Body::empty()).unwrap();
        let reply = send(request);
        // `before` made of spaces only widens the gap after the scheme (one or more is right).
        let only_spaces_before = before.trim_start_matches(' ').is_empty();
        let well_formed = scheme.eq_ignore_ascii_case("bearer") && spaces + before.len() > 0 && only_spaces_before && after.is_empty();
        if well_formed {
            prop_assert_eq!(reply.status.as_u16(), 200, "{:?}: {}", value, reply.text());
        } else {
            prop_assert!(matches!(reply.status.as_u16(), 400 | 401), "{:?}: {}", value, reply.status);
            let challenge = reply.header("www-authenticate").unwrap_or_default();
            prop_assert!(challenge.starts_with("Bearer resource_metadata=\""), "{}", challenge);
            let expected = if reply.status.as_u16() == 400 { "invalid_request" } else { "invalid_token" };
            prop_assert!(challenge.contains(&format!("error=\"{expected}\"")), "{}", challenge);
        }
    }
}

/// The crate-private rules themselves, through the `fuzzing` feature (on under `--all-features`).
#[cfg(feature = "fuzzing")]
mod pure_rules {
    use mcp_oauth::fuzzing::{
        pkce_check_challenge, pkce_verifier_is_valid, pkce_verify, redirect_matches,
        redirect_validate_registrable,
    };
    use proptest::prelude::*;

    use super::{is_registrable, is_verifier_syntax, redirect_uris};
    use crate::common::pkce;

    fn s256(verifier: &str) -> String {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn pkce_verifies_exactly_its_own_challenge(verifier in ".{0,140}", other in ".{0,140}") {
            prop_assert_eq!(pkce_verifier_is_valid(&verifier), is_verifier_syntax(&verifier));
            let challenge = s256(&verifier);
            prop_assert!(pkce_verify(&verifier, &challenge));
            prop_assert!(pkce_check_challenge(Some(&challenge), Some("S256")).is_ok());
            prop_assert_eq!(pkce_verify(&other, &challenge), other == verifier);
            prop_assert_eq!(pkce_verify(&verifier, &other), other == challenge);
        }

        #[test]
        fn pkce_takes_only_s256_digests(challenge in prop_oneof![Just(pkce().1), ".{0,60}"], method in prop::option::of(prop_oneof![Just("S256".to_owned()), Just("plain".to_owned()), ".{0,8}"])) {
            let digest_shape = challenge.len() == 43
                && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let accepted = pkce_check_challenge(Some(&challenge), method.as_deref()).is_ok();
            prop_assert_eq!(accepted, digest_shape && method.as_deref() == Some("S256"));
            prop_assert!(pkce_check_challenge(None, method.as_deref()).is_err());
        }

        #[test]
        fn redirect_rules_hold(uri in redirect_uris(), requested in redirect_uris()) {
            let native = mcp_oauth::config::DEFAULT_NATIVE_REDIRECT_URIS.iter().map(|&uri| uri.to_owned()).collect::<Vec<_>>();
            prop_assert_eq!(redirect_validate_registrable(&uri, &native).is_ok(), is_registrable(&uri), "{:?}", uri);
            prop_assert!(redirect_matches(&uri, &uri));
            if redirect_matches(&uri, &requested) && uri != requested {
                let (reg, req) = (url::Url::parse(&uri).unwrap(), url::Url::parse(&requested).unwrap());
                prop_assert_eq!(reg.scheme(), "http");
                prop_assert_eq!((reg.host(), reg.path(), reg.query()), (req.host(), req.path(), req.query()));
                prop_assert_eq!((req.username(), req.password(), req.fragment()), ("", None, None));
            }
        }
    }
}

#[test]
fn registration_errors_use_only_rfc6749_characters() {
    // Found by the `register` fuzz target: this description once quoted `["code"]`, and RFC 6749
    // §5.2 allows no `"` in `error_description`.
    let request = Request::post("/register")
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::json!({ "redirect_uris": [LOOPBACK_REDIRECT], "response_types": ["token"] })
                .to_string(),
        ))
        .unwrap();
    assert_json_4xx(&send(request), &["invalid_client_metadata"]);
}
