//! Reading an MCP request's JSON-RPC body for the scope policy, and putting it back unchanged.

use std::pin::Pin;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderMap, HeaderName, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::oauth::{OAuthError, ScopePolicy};

/// The 2026-07-28 transport's routing headers: a server may dispatch on them, so they count too.
const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// The scopes the request's MCP messages need under `policy`, and the request to pass on (its body
/// read and put back when it was a JSON `POST`). `Err` answers a body the policy cannot read:
/// 413, 415 or 400, never passed on (see [`ScopePolicy`]).
pub(super) async fn needed_scopes(
    request: Request<Body>,
    policy: &ScopePolicy,
) -> Result<(Request<Body>, Vec<String>), Response> {
    if request.method() != Method::POST {
        return Ok((request, Vec::new()));
    }
    let mut needed = by_headers(request.headers(), policy);
    if !is_json(request.headers()) {
        return Ok((request, needed));
    }
    if request
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|coding| !coding.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the JSON-RPC body uncompressed (no Content-Encoding)".to_owned(),
        ));
    }
    let limit = policy.body_limit();
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large(limit));
    }
    let bytes = read(body, limit).await?;
    for scope in policy
        .needed_by_body(&bytes)
        .map_err(|description| refuse(StatusCode::BAD_REQUEST, description))?
    {
        if !needed.contains(&scope) {
            needed.push(scope);
        }
    }
    Ok((Request::from_parts(parts, Body::from(bytes)), needed))
}

/// What `Mcp-Method` (and, for a tool call, `Mcp-Name`) ask for.
fn by_headers(headers: &HeaderMap, policy: &ScopePolicy) -> Vec<String> {
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    match text(&MCP_METHOD) {
        Some(method) => policy.scopes_for(method.trim(), text(&MCP_NAME).map(str::trim)),
        None => Vec::new(),
    }
}

/// `application/json` or `application/…+json`, any parameters: what JSON-RPC over HTTP is sent as,
/// and what axum's `Json` accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(media) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
    else {
        return false;
    };
    let media = media.trim().to_ascii_lowercase();
    media == "application/json"
        || media
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// The whole body, or 413 past `limit` (whatever Content-Length said), or 400 if the client broke
/// off.
async fn read(mut body: Body, limit: usize) -> Result<Bytes, Response> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|_| {
            refuse(
                StatusCode::BAD_REQUEST,
                "the request body could not be read".to_owned(),
            )
        })?;
        // Trailers carry no JSON-RPC; only data frames count.
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total > limit {
                return Err(too_large(limit));
            }
            chunks.push(data);
        }
    }
    Ok(match chunks.len() {
        1 => chunks.swap_remove(0),
        _ => Bytes::from(chunks.concat()),
    })
}

fn too_large(limit: usize) -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the JSON-RPC body is larger than {limit} bytes"),
    )
}

/// An RFC 6749-shaped `invalid_request` with `status`.
fn refuse(status: StatusCode, description: String) -> Response {
    (status, OAuthError::invalid_request(description)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
        headers
    }

    #[test]
    fn json_media_types() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/json-rpc+json",
        ] {
            assert!(is_json(&with_type(yes)), "{yes}");
        }
        for no in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "text/json+json",
        ] {
            assert!(!is_json(&with_type(no)), "{no}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn routing_headers_count() {
        let policy = ScopePolicy::new()
            .tool("delete_repo", ["admin"])
            .method("resources/write", ["files:write"]);
        let mut headers = HeaderMap::new();
        headers.insert(MCP_METHOD, "tools/call".parse().unwrap());
        headers.insert(MCP_NAME, "delete_repo".parse().unwrap());
        assert_eq!(by_headers(&headers, &policy), ["admin"]);
        headers.insert(MCP_METHOD, "resources/write".parse().unwrap());
        assert_eq!(by_headers(&headers, &policy), ["files:write"]);
        assert!(by_headers(&HeaderMap::new(), &policy).is_empty());
    }
}
