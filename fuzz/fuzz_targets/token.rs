//! `POST /token`, `/revoke` and `/introspect`: form bodies (raw bytes, or parameters whose values may
//! be a live code, verifier or token the owner really approved), with or without HTTP Basic client
//! authentication. Tokens are issued only for the live code with its own verifier and client (and
//! never twice for one code), or the live refresh token of its client; a token is revoked only by
//! its own client; introspection reports only live access tokens (a refresh token only to its own
//! client), and only to the authenticated resource server (the pre-registered client). Every refusal is an RFC 6749 §5.2 / RFC 7009 JSON error.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::Request;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::edit::{self, Edit};
use mcp_oauth_fuzz::{
    LOOPBACK_REDIRECT, RESOURCE, Reply, STATIC_CLIENT_ID, STATIC_CLIENT_SECRET, assert, harness,
};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Endpoint {
    Token,
    Revoke,
    Introspect,
}

#[derive(Arbitrary, Debug, Clone)]
enum Name {
    GrantType,
    Code,
    CodeVerifier,
    ClientId,
    ClientSecret,
    RefreshToken,
    RedirectUri,
    Resource,
    Scope,
    Token,
    TokenTypeHint,
    Other(String),
}

#[derive(Arbitrary, Debug, Clone, PartialEq)]
enum Val {
    LiveCode,
    LiveVerifier,
    LiveAccess,
    LiveRefresh,
    PublicClient,
    StaticClient,
    StaticSecret,
    AuthorizationCode,
    RefreshTokenGrant,
    Loopback,
    Resource,
    OtherResource,
    Mcp,
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Auth {
    None,
    Basic(Val, Val),
    Raw(String),
}

/// A correct request to start from, so that edits explore around what succeeds.
#[derive(Arbitrary, Debug)]
enum Base {
    // First: an all-zero input decodes to the correct code exchange, and the fuzzer starts there.
    CodeExchange,
    Refresh,
    Revoke,
    Introspect,
    Nothing,
}

#[derive(Arbitrary, Debug)]
struct Input {
    endpoint: Endpoint,
    base: Base,
    edits: Vec<Edit<Name, Val>>,
    auth: Auth,
    /// Sent instead of the parameters when present.
    raw_body: Option<Vec<u8>>,
}

fn base(base: &Base) -> Vec<(Name, Val)> {
    match base {
        Base::Nothing => vec![],
        Base::CodeExchange => vec![
            (Name::GrantType, Val::AuthorizationCode),
            (Name::Code, Val::LiveCode),
            (Name::CodeVerifier, Val::LiveVerifier),
            (Name::ClientId, Val::PublicClient),
            (Name::RedirectUri, Val::Loopback),
            (Name::Resource, Val::Resource),
        ],
        Base::Refresh => vec![
            (Name::GrantType, Val::RefreshTokenGrant),
            (Name::RefreshToken, Val::LiveRefresh),
            (Name::ClientId, Val::PublicClient),
        ],
        Base::Revoke => vec![
            (Name::Token, Val::LiveAccess),
            (Name::ClientId, Val::PublicClient),
        ],
        Base::Introspect => vec![
            (Name::Token, Val::LiveAccess),
            (Name::ClientId, Val::StaticClient),
            (Name::ClientSecret, Val::StaticSecret),
        ],
    }
}

/// The parameters: the base with the edits applied in order.
fn params(input: &Input) -> Vec<(Name, Val)> {
    edit::apply(base(&input.base), &input.edits, name)
}

fn name(name: &Name) -> &str {
    match name {
        Name::GrantType => "grant_type",
        Name::Code => "code",
        Name::CodeVerifier => "code_verifier",
        Name::ClientId => "client_id",
        Name::ClientSecret => "client_secret",
        Name::RefreshToken => "refresh_token",
        Name::RedirectUri => "redirect_uri",
        Name::Resource => "resource",
        Name::Scope => "scope",
        Name::Token => "token",
        Name::TokenTypeHint => "token_type_hint",
        Name::Other(other) => other,
    }
}

/// The live values one run needs, minted only if the input names them.
struct Live {
    code: String,
    verifier: String,
    access: String,
    refresh: String,
}

fn uses(input: &Input, params: &[(Name, Val)], wanted: &[Val]) -> bool {
    let in_auth = match &input.auth {
        Auth::Basic(user, password) => wanted.contains(user) || wanted.contains(password),
        _ => false,
    };
    in_auth || params.iter().any(|(_, v)| wanted.contains(v))
}

fn value(val: &Val, live: &Live, public_client: &str) -> String {
    match val {
        Val::LiveCode => live.code.clone(),
        Val::LiveVerifier => live.verifier.clone(),
        Val::LiveAccess => live.access.clone(),
        Val::LiveRefresh => live.refresh.clone(),
        Val::PublicClient => public_client.to_owned(),
        Val::StaticClient => STATIC_CLIENT_ID.to_owned(),
        Val::StaticSecret => STATIC_CLIENT_SECRET.to_owned(),
        Val::AuthorizationCode => "authorization_code".to_owned(),
        Val::RefreshTokenGrant => "refresh_token".to_owned(),
        Val::Loopback => LOOPBACK_REDIRECT.to_owned(),
        Val::Resource => RESOURCE.to_owned(),
        Val::OtherResource => "http://localhost:8080/other".to_owned(),
        Val::Mcp => "mcp".to_owned(),
        Val::Text(text) => text.clone(),
    }
}

fn mcp_status(token: &str) -> u16 {
    let request = Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    harness().send(request).status.as_u16()
}

fuzz_target!(|input: Input| {
    let harness = harness();
    let public = harness.public_client.as_str();
    let mut live = Live {
        code: String::new(),
        verifier: String::new(),
        access: String::new(),
        refresh: String::new(),
    };
    let params_in = params(&input);
    if uses(&input, &params_in, &[Val::LiveCode, Val::LiveVerifier]) {
        let code = harness.live_code();
        (live.code, live.verifier) = (code.code, code.verifier);
    }
    if uses(&input, &params_in, &[Val::LiveAccess, Val::LiveRefresh]) {
        (live.access, live.refresh) = harness.live_tokens();
    }

    let pairs: Vec<(String, String)> = params_in
        .iter()
        .map(|(n, v)| (name(n).to_owned(), value(v, &live, public)))
        .collect();
    let body = match &input.raw_body {
        Some(raw) => raw.clone(),
        None => url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish()
            .into_bytes(),
    };
    let (authorization, basic_user) = match &input.auth {
        Auth::None => (None, None),
        Auth::Basic(user, password) => {
            let user = value(user, &live, public);
            let credentials = format!("{user}:{}", value(password, &live, public));
            (
                Some(format!("Basic {}", STANDARD.encode(credentials))),
                Some(user),
            )
        }
        Auth::Raw(raw) => (Some(raw.clone()), None),
    };
    let path = match input.endpoint {
        Endpoint::Token => "/token",
        Endpoint::Revoke => "/revoke",
        Endpoint::Introspect => "/introspect",
    };
    let mut request =
        Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(authorization) = &authorization {
        request = request.header("authorization", authorization.as_str());
    }
    let Ok(request) = request.body(Body::from(body.clone())) else {
        return;
    };
    let reply = harness.send(request);
    assert::not_5xx(&reply);

    // What the server read: the parameters as sent, when they were sent as parameters.
    let params: Option<HashMap<&str, &str>> = input.raw_body.is_none().then(|| {
        pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    });
    let param = |name: &str| params.as_ref().and_then(|p| p.get(name).copied());
    let caller_is =
        |client: &str| param("client_id") == Some(client) || basic_user.as_deref() == Some(client);

    match input.endpoint {
        Endpoint::Token if reply.status.is_success() => {
            let issued = issued_token(&reply);
            assert_eq!(mcp_status(&issued), 200, "the issued token does not work");
            assert!(params.is_some(), "tokens for a raw body");
            assert!(caller_is(public), "tokens for another client: {pairs:?}");
            match param("grant_type") {
                Some("authorization_code") => {
                    assert!(
                        !live.code.is_empty() && param("code") == Some(&live.code),
                        "{pairs:?}"
                    );
                    assert_eq!(
                        param("code_verifier"),
                        Some(live.verifier.as_str()),
                        "{pairs:?}"
                    );
                    assert!(
                        matches!(param("redirect_uri"), None | Some(LOOPBACK_REDIRECT)),
                        "{pairs:?}"
                    );
                    assert!(
                        matches!(param("resource"), None | Some(RESOURCE)),
                        "{pairs:?}"
                    );
                    let replay = harness.post_form("/token", body);
                    assert::oauth_error(&replay, &["invalid_grant"]);
                }
                Some("refresh_token") => {
                    assert!(
                        !live.refresh.is_empty() && param("refresh_token") == Some(&live.refresh),
                        "{pairs:?}"
                    );
                }
                other => panic!("tokens for grant_type {other:?}"),
            }
        }
        Endpoint::Token => {
            assert::oauth_error(&reply, assert::TOKEN_ERRORS);
            basic_challenge(&reply, authorization.as_deref());
        }
        Endpoint::Revoke if reply.status.is_success() => {
            // Another client's revocation is answered 200 too, and changes nothing.
            if !live.access.is_empty() && !caller_is(public) {
                assert_eq!(
                    mcp_status(&live.access),
                    200,
                    "revoked by another client: {pairs:?}"
                );
            }
        }
        Endpoint::Revoke => {
            assert::oauth_error(&reply, assert::REVOKE_ERRORS);
            basic_challenge(&reply, authorization.as_deref());
        }
        Endpoint::Introspect if reply.status.is_success() => {
            let answer = reply.json();
            if answer["active"] == true {
                let token = param("token").unwrap_or_default();
                // The live tokens are the public client's: its refresh token is nobody
                // else's business, so only the access token can be active to the resource server.
                assert!(!token.is_empty() && token == live.access, "{answer}");
                assert_eq!(answer["token_type"], "Bearer", "{answer}");
                assert!(caller_is(STATIC_CLIENT_ID), "introspection for {pairs:?}");
            } else {
                assert_eq!(answer, serde_json::json!({ "active": false }));
            }
        }
        Endpoint::Introspect => {
            assert::oauth_error(&reply, assert::TOKEN_ERRORS);
            basic_challenge(&reply, authorization.as_deref());
        }
    }
});

/// A successful token response (RFC 6749 §5.1), and its access token.
fn issued_token(reply: &Reply) -> String {
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    assert!(
        body["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
        "{body}"
    );
    assert!(body["expires_in"].is_u64(), "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// RFC 6749 §5.2: `invalid_client` after HTTP Basic authentication is a 401 with a Basic challenge.
fn basic_challenge(reply: &Reply, authorization: Option<&str>) {
    let used_basic = authorization.is_some_and(|a| {
        a.trim_start()
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("basic "))
    });
    if reply.status.as_u16() == 401 && used_basic {
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|c| c.starts_with("Basic ")),
            "{:?}",
            reply.headers
        );
    }
}
