//! The HTML pages (consent, passkey registration, error), their one static script and stylesheet, and
//! the security headers every page is sent with.
//!
//! Templates are askama files under `templates/` (HTML auto-escaping, so every client-supplied string is
//! escaped). Pages contain no inline script or style: the CSP below allows only same-origin files, which
//! are embedded in the binary and served by [`script`] and [`style`].

use std::collections::BTreeMap;
use std::sync::LazyLock;

use askama::Template;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::oauth::client_format::clean_client_name;
use crate::paths;

mod console;
#[cfg(test)]
mod tests;

pub(crate) use console::{ConsolePage, console, console_login};

const SCRIPT: &str = include_str!("static/mcp-oauth.js");
const STYLE: &str = include_str!("static/mcp-oauth.css");

/// The page CSP: only same-origin script, style and fetch; no framing, no plugins, no `<base>`.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A client-chosen name longer than this is cut for display, so it cannot push the rest of the consent
/// page (above all the redirect origin) out of view.
const MAX_CLIENT_NAME_CHARS: usize = 120;

/// `GET` [`paths::SCRIPT`].
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET` [`paths::STYLE`].
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The consent page shown by `GET /authorize` for a valid request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsentPage<'a> {
    pub(crate) app_name: &'a str,
    /// Self-asserted by the client, so the page labels it as such.
    pub(crate) client_name: Option<&'a str>,
    pub(crate) client_id: &'a str,
    /// The configured client; `false` means it registered itself (DCR), which the page flags.
    pub(crate) pre_registered: bool,
    /// For a client identified by a Client ID Metadata Document: the host serving it, which the
    /// page shows as verified (the document's `client_id` is its own URL on that host).
    pub(crate) verified_host: Option<&'a str>,
    pub(crate) redirect_origin: &'a str,
    pub(crate) redirect_is_loopback: bool,
    pub(crate) scopes: &'a [String],
    /// Plain-language descriptions of (some of) the scopes, shown next to their codes.
    pub(crate) scope_descriptions: &'a BTreeMap<String, String>,
    /// The MCP server URL access is granted to.
    pub(crate) resource: &'a str,
    /// Opaque; the script sends it back to the JSON endpoints.
    pub(crate) request_id: &'a str,
    /// Without a passkey nothing can be approved: the page says so and links to registration.
    pub(crate) has_passkeys: bool,
    pub(crate) register_path: &'a str,
}

/// The passkey registration page, `GET /passkey/register`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RegisterPage<'a> {
    pub(crate) app_name: &'a str,
    /// Then a new passkey needs approval by an existing one, or a fresh setup token.
    pub(crate) has_passkeys: bool,
}

/// A page for a request that cannot go on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorPage<'a> {
    pub(crate) app_name: &'a str,
    pub(crate) status: StatusCode,
    pub(crate) title: &'a str,
    pub(crate) message: &'a str,
    /// When the client and its redirect URI are known to be valid: a link back to the application
    /// carrying the error (never an automatic redirect).
    pub(crate) return_to: Option<ReturnLink<'a>>,
}

/// Where the error page's "return" link goes, and the origin it names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReturnLink<'a> {
    pub(crate) href: &'a str,
    pub(crate) origin: &'a str,
}

/// Asset URLs carry a hash of their content, so a browser never pairs a cached old script with a new
/// page after an upgrade, despite the hour-long cache.
static ASSETS: LazyLock<Assets> = LazyLock::new(Assets::new);

#[derive(Debug)]
struct Assets {
    script: String,
    style: String,
}

impl Assets {
    fn new() -> Self {
        Self {
            script: format!("{}?v={:08x}", paths::SCRIPT, fnv1a(SCRIPT.as_bytes())),
            style: format!("{}?v={:08x}", paths::STYLE, fnv1a(STYLE.as_bytes())),
        }
    }
}

/// 32-bit FNV-1a: a cache buster, not a security measure.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

#[derive(Template)]
#[template(path = "consent.html", config = "src/pages/askama.toml")]
struct ConsentView<'a> {
    assets: &'static Assets,
    app_name: &'a str,
    page: &'a ConsentPage<'a>,
    client_name: Option<String>,
    scopes: Vec<ScopeLine<'a>>,
}

/// One scope on the consent page: its code and what it means.
struct ScopeLine<'a> {
    code: &'a str,
    description: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "register.html", config = "src/pages/askama.toml")]
struct RegisterView<'a> {
    assets: &'static Assets,
    app_name: &'a str,
    page: &'a RegisterPage<'a>,
}

#[derive(Template)]
#[template(path = "error.html", config = "src/pages/askama.toml")]
struct ErrorView<'a> {
    assets: &'static Assets,
    app_name: &'a str,
    page: &'a ErrorPage<'a>,
    return_to: Option<ReturnLink<'a>>,
}

/// `200` with the consent page.
pub(crate) fn consent(page: &ConsentPage<'_>) -> Response {
    let view = ConsentView {
        assets: &ASSETS,
        app_name: page.app_name,
        page,
        client_name: page
            .client_name
            .map(display_name)
            .filter(|name| !name.is_empty()),
        scopes: page
            .scopes
            .iter()
            .map(|code| ScopeLine {
                code,
                description: page.scope_descriptions.get(code).map(String::as_str),
            })
            .collect(),
    };
    render(StatusCode::OK, &view)
}

/// `200` with the passkey registration page.
pub(crate) fn register(page: &RegisterPage<'_>) -> Response {
    let view = RegisterView {
        assets: &ASSETS,
        app_name: page.app_name,
        page,
    };
    render(StatusCode::OK, &view)
}

/// The error page, with `page.status`.
pub(crate) fn error(page: &ErrorPage<'_>) -> Response {
    let view = ErrorView {
        assets: &ASSETS,
        app_name: page.app_name,
        page,
        // Defence in depth: the http layer only passes validated redirect URIs, but a link is never
        // rendered unless it is plainly http(s) (no `javascript:` or `data:` by any route).
        return_to: page.return_to.filter(|link| is_http_url(link.href)),
    };
    render(page.status, &view)
}

/// Adds the page security headers to an HTML body.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    const HEADERS: [(HeaderName, &str); 7] = [
        (CONTENT_TYPE, "text/html; charset=utf-8"),
        (CONTENT_SECURITY_POLICY, CSP),
        (X_FRAME_OPTIONS, "DENY"),
        (REFERRER_POLICY, "no-referrer"),
        (CACHE_CONTROL, "no-store"),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn render(status: StatusCode, view: &impl Template) -> Response {
    match view.render() {
        Ok(body) => html(status, body),
        // Rendering into a String only fails if a Display impl does; answer with a plain page rather
        // than panic.
        Err(_) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            FALLBACK_PAGE.replace("{STYLE_PATH}", paths::STYLE),
        ),
    }
}

const FALLBACK_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Error</title>\
<link rel=\"stylesheet\" href=\"{STYLE_PATH}\"></head><body><main class=\"shell\"><div class=\"card\">\
<h1>Something went wrong</h1><p class=\"lead\">This page could not be shown. Please try again.</p>\
</div></main></body></html>";

/// A client name as shown: cleaned as it is when kept ([`clean_client_name`]; names from the
/// configuration and older records are cleaned here too), and cut to what a page has room for.
fn display_name(name: &str) -> String {
    let cleaned = clean_client_name(name).unwrap_or_default();
    match cleaned.char_indices().nth(MAX_CLIENT_NAME_CHARS) {
        Some((cut, _)) => format!("{}…", cleaned[..cut].trim_end()),
        None => cleaned,
    }
}

fn is_http_url(href: &str) -> bool {
    let lower = href.get(..8).unwrap_or(href).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}
