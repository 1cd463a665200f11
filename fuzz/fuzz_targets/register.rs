//! `POST /register` (RFC 7591): any bytes, or JSON metadata built from fields near the rules. A
//! registration succeeds only with redirect URIs the rules allow, all of them taken from the request;
//! every refusal is an RFC 7591 §3.2.2 JSON error, or a `503` once the registrations awaiting
//! approval reach their cap.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcp_oauth::config::DEFAULT_NATIVE_REDIRECT_URIS;
use mcp_oauth::fuzzing::redirect_validate_registrable;
use mcp_oauth_fuzz::{HTTPS_REDIRECT, LOOPBACK_REDIRECT, assert, harness};
use serde_json::{Map, Value, json};

#[derive(Arbitrary, Debug)]
enum Text {
    Loopback,
    Https,
    None,
    ClientSecretPost,
    AuthorizationCode,
    RefreshToken,
    Code,
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Field {
    Text(Text),
    List(Vec<Text>),
    Number(i64),
    Bool(bool),
    Null,
    Nested(Vec<(String, Text)>),
}

#[derive(Arbitrary, Debug)]
enum Key {
    RedirectUris,
    TokenEndpointAuthMethod,
    GrantTypes,
    ResponseTypes,
    ClientName,
    ClientUri,
    Scope,
    ApplicationType,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(Vec<u8>),
    Metadata(Vec<(Key, Field)>),
}

fn text(text: &Text) -> Value {
    Value::from(match text {
        Text::Loopback => LOOPBACK_REDIRECT,
        Text::Https => HTTPS_REDIRECT,
        Text::None => "none",
        Text::ClientSecretPost => "client_secret_post",
        Text::AuthorizationCode => "authorization_code",
        Text::RefreshToken => "refresh_token",
        Text::Code => "code",
        Text::Any(any) => any,
    })
}

fn field(field: &Field) -> Value {
    match field {
        Field::Text(t) => text(t),
        Field::List(items) => Value::Array(items.iter().map(text).collect()),
        Field::Number(n) => json!(n),
        Field::Bool(b) => json!(b),
        Field::Null => Value::Null,
        Field::Nested(pairs) => {
            Value::Object(pairs.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        }
    }
}

fn name(name: &Key) -> &str {
    match name {
        Key::RedirectUris => "redirect_uris",
        Key::TokenEndpointAuthMethod => "token_endpoint_auth_method",
        Key::GrantTypes => "grant_types",
        Key::ResponseTypes => "response_types",
        Key::ClientName => "client_name",
        Key::ClientUri => "client_uri",
        Key::Scope => "scope",
        Key::ApplicationType => "application_type",
        Key::Other(other) => other,
    }
}

fuzz_target!(|input: Input| {
    let harness = harness();
    let body = match &input {
        Input::Raw(bytes) => bytes.clone(),
        Input::Metadata(fields) => {
            let map: Map<String, Value> = fields
                .iter()
                .map(|(n, f)| (name(n).to_owned(), field(f)))
                .collect();
            Value::Object(map).to_string().into_bytes()
        }
    };
    let reply = harness.post_json("/register", body.clone());

    if reply.status.as_u16() == 503 {
        return assert::registrations_full(&reply);
    }
    assert::not_5xx(&reply);
    if reply.status.as_u16() != 201 {
        return assert::oauth_error(&reply, assert::REGISTER_ERRORS);
    }
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let request: Value =
        serde_json::from_slice(&body).expect("a registration from a body that is not JSON");
    let registered = reply.json();
    assert!(
        registered["client_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{registered}"
    );

    let asked = request["redirect_uris"]
        .as_array()
        .expect("redirect_uris was sent");
    let given = registered["redirect_uris"]
        .as_array()
        .expect("redirect_uris registered");
    assert!(!given.is_empty());
    let native: Vec<String> = DEFAULT_NATIVE_REDIRECT_URIS
        .iter()
        .map(|&uri| uri.to_owned())
        .collect();
    for uri in given {
        assert!(asked.contains(uri), "{uri} was not asked for");
        let uri = uri.as_str().expect("a string");
        assert!(
            redirect_validate_registrable(uri, &native).is_ok(),
            "{uri:?} registered"
        );
    }

    let method = registered["token_endpoint_auth_method"]
        .as_str()
        .unwrap_or_default();
    assert!(
        matches!(
            method,
            "none" | "client_secret_basic" | "client_secret_post"
        ),
        "{method}"
    );
    assert_eq!(
        registered.get("client_secret").is_some(),
        method != "none",
        "{registered}"
    );
});
