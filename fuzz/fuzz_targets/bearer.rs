//! The bearer guard in front of `/mcp`: `Authorization` headers (any bytes, or the live access token
//! wrapped in fuzzed text) and `access_token` query parameters. Only the one well-formed `Bearer`
//! header carrying the live token gets through; every refusal carries one well-formed
//! `WWW-Authenticate: Bearer` challenge.
#![no_main]

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request};
use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::{assert, form, harness};

#[derive(Arbitrary, Debug)]
enum Header {
    Raw(Vec<u8>),
    /// `{scheme}{spaces}{before}{live token}{after}`.
    Live {
        scheme: Scheme,
        spaces: u8,
        before: String,
        after: String,
    },
}

#[derive(Arbitrary, Debug)]
enum Scheme {
    Bearer,
    Lower,
    Upper,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum QueryName {
    AccessToken,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: bool,
    headers: Vec<Header>,
    query: Option<(QueryName, String)>,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let harness = harness();
    let token = &harness.access_token;
    let values: Vec<Vec<u8>> = input
        .headers
        .iter()
        .map(|header| match header {
            Header::Raw(bytes) => bytes.clone(),
            Header::Live {
                scheme,
                spaces,
                before,
                after,
            } => {
                let scheme = match scheme {
                    Scheme::Bearer => "Bearer",
                    Scheme::Lower => "bearer",
                    Scheme::Upper => "BEARER",
                    Scheme::Other(other) => other,
                };
                let spaces = " ".repeat(usize::from(*spaces % 4));
                format!("{scheme}{spaces}{before}{token}{after}").into_bytes()
            }
        })
        .collect();
    let mut uri = "/mcp".to_owned();
    let mut query_has_token = false;
    if let Some((name, value)) = &input.query {
        let name = match name {
            QueryName::AccessToken => "access_token",
            QueryName::Other(other) => other,
        };
        query_has_token = name == "access_token";
        uri = format!("/mcp?{}", form(&[(name, value)]));
    }
    let mut request = Request::builder()
        .method(if input.method {
            Method::POST
        } else {
            Method::GET
        })
        .uri(&uri);
    for value in &values {
        let Ok(value) = HeaderValue::from_bytes(value) else {
            return;
        };
        request = request.header("authorization", value);
    }
    let Ok(request) = request.body(Body::from(input.body)) else {
        return;
    };
    let reply = harness.send(request);

    assert::not_5xx(&reply);
    if reply.status.is_success() {
        // The one header must be `Bearer` (any case), spaces, and exactly the live token.
        assert!(!query_has_token, "a token in the query string was accepted");
        assert_eq!(values.len(), 1, "{values:?}");
        let value = std::str::from_utf8(&values[0]).expect("UTF-8");
        let (scheme, rest) = value.split_once(' ').expect("a scheme");
        assert!(scheme.eq_ignore_ascii_case("bearer"), "{value:?}");
        assert_eq!(rest.trim_start_matches(' '), token.as_str(), "{value:?}");
    } else {
        assert::bearer_rejection(&reply);
    }
});
