//! The invariants: what any answer must look like, whatever was sent.

use crate::{RESOURCE_METADATA, Reply};

/// RFC 6749 §5.2 token and revocation errors (and RFC 8707's `invalid_target`).
pub const TOKEN_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
];

/// RFC 7009 §2.2.1 adds `unsupported_token_type` to the RFC 6749 errors.
pub const REVOKE_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "unsupported_token_type",
];

/// RFC 7591 §3.2.2, plus `invalid_request` for a body that is not JSON at all.
pub const REGISTER_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_redirect_uri",
    "invalid_client_metadata",
];

/// The page endpoints' JSON errors.
pub const PAGE_ERRORS: &[&str] = &["invalid_request", "access_denied"];

/// No answer is ever a server error: bad input is the client's fault, and the stores are up.
#[track_caller]
pub fn not_5xx(reply: &Reply) {
    assert!(
        !reply.status.is_server_error(),
        "{}: {}",
        reply.status,
        reply.text()
    );
}

/// `503` from `/register` when the registrations awaiting the owner's approval are at their cap
/// (a long run fills it): `temporarily_unavailable`, with `Retry-After`, not cacheable.
#[track_caller]
pub fn registrations_full(reply: &Reply) {
    assert_eq!(reply.status.as_u16(), 503, "{}", reply.text());
    assert_eq!(
        reply.json()["error"],
        "temporarily_unavailable",
        "{}",
        reply.text()
    );
    assert!(
        reply.header("retry-after").is_some(),
        "503 without Retry-After"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

/// A 4xx with an RFC 6749 §5.2 JSON body: `error` one of `allowed`, a printable `error_description`,
/// `application/json`, not cacheable.
#[track_caller]
pub fn oauth_error(reply: &Reply, allowed: &[&str]) {
    assert!(
        reply.status.is_client_error(),
        "{}: {}",
        reply.status,
        reply.text()
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{}",
        reply.text()
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    let code = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error member: {body}"));
    assert!(
        allowed.contains(&code),
        "{} with unexpected error {code:?}: {body}",
        reply.status
    );
    let expected_status = match code {
        "invalid_client" | "invalid_token" => 401,
        "access_denied" | "insufficient_scope" => 403,
        _ => 400,
    };
    assert_eq!(reply.status.as_u16(), expected_status, "{body}");
    if let Some(description) = body.get("error_description") {
        let description = description.as_str().expect("error_description is a string");
        assert!(is_rfc6749_text(description), "{description:?}");
    }
}

/// RFC 6749 §5.2: `error_description` is %x20-21 / %x23-5B / %x5D-7E.
pub fn is_rfc6749_text(text: &str) -> bool {
    text.bytes()
        .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// A 401/400/403 from the guard: a JSON error and one well-formed `WWW-Authenticate: Bearer`
/// challenge (RFC 6750 §3) naming this server's resource metadata (RFC 9728 §5.1).
#[track_caller]
pub fn bearer_rejection(reply: &Reply) {
    let expected_error = match reply.status.as_u16() {
        400 => Some("invalid_request"),
        401 => None,
        403 => Some("insufficient_scope"),
        other => panic!("the guard answered {other}: {}", reply.text()),
    };
    let challenges: Vec<_> = reply.headers.get_all("www-authenticate").iter().collect();
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    let challenge = challenges[0].to_str().expect("ASCII challenge");
    let params = parse_bearer_challenge(challenge)
        .unwrap_or_else(|| panic!("malformed challenge {challenge:?}"));
    assert_eq!(
        params[0],
        ("resource_metadata", RESOURCE_METADATA),
        "{challenge}"
    );
    let error = params.iter().find(|(k, _)| *k == "error").map(|(_, v)| *v);
    match expected_error {
        Some(expected) => assert_eq!(error, Some(expected), "{challenge}"),
        // 401: a bare challenge for no credentials, `invalid_token` for bad ones.
        None => assert!(matches!(error, None | Some("invalid_token")), "{challenge}"),
    }
    let body = reply.json();
    assert_eq!(
        body["error"].as_str(),
        Some(error.unwrap_or("invalid_token")),
        "{body}"
    );
}

/// `Bearer k="v", k="v"`: the parameters, or `None` if the value is not in that form with known
/// names and quoted values free of quotes, backslashes and control characters.
pub fn parse_bearer_challenge(value: &str) -> Option<Vec<(&str, &str)>> {
    let mut rest = value.strip_prefix("Bearer ")?;
    let mut params = Vec::new();
    loop {
        let (name, after) = rest.split_once("=\"")?;
        let (inner, after) = after.split_once('"')?;
        if !matches!(
            name,
            "resource_metadata" | "error" | "error_description" | "scope"
        ) || !is_rfc6749_text(inner)
            || params.iter().any(|(seen, _)| *seen == name)
        {
            return None;
        }
        params.push((name, inner));
        if after.is_empty() {
            return Some(params);
        }
        rest = after.strip_prefix(", ")?;
    }
}
