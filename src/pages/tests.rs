use axum::body::to_bytes;
use axum::http::StatusCode;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::Response;

use super::*;

const HOSTILE: &str = "<script>alert(1)</script>\"'&";

async fn body_of(response: Response) -> String {
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn header<'r>(response: &'r Response, name: &axum::http::HeaderName) -> &'r str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

static NO_DESCRIPTIONS: BTreeMap<String, String> = BTreeMap::new();

fn consent_page<'a>(scopes: &'a [String], client_name: Option<&'a str>) -> ConsentPage<'a> {
    ConsentPage {
        app_name: "Notes MCP",
        client_name,
        client_id: "client-123",
        pre_registered: false,
        verified_host: None,
        redirect_origin: "https://claude.ai",
        redirect_is_loopback: false,
        scopes,
        scope_descriptions: &NO_DESCRIPTIONS,
        resource: "https://notes.example.com/mcp",
        request_id: "req-abc",
        has_passkeys: true,
        register_path: paths::PASSKEY_REGISTER,
    }
}

fn assert_page_headers(response: &Response) {
    assert_eq!(header(response, &CONTENT_TYPE), "text/html; charset=utf-8");
    let csp = header(response, &CONTENT_SECURITY_POLICY);
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(header(response, &X_FRAME_OPTIONS), "DENY");
    assert_eq!(header(response, &REFERRER_POLICY), "no-referrer");
    assert_eq!(header(response, &CACHE_CONTROL), "no-store");
    assert_eq!(header(response, &X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(
        header(
            response,
            &HeaderName::from_static("cross-origin-opener-policy")
        ),
        "same-origin"
    );
}

/// Only the two static files: no inline script, no inline style, nothing from elsewhere.
fn assert_self_contained(html: &str) {
    let scripts: Vec<&str> = html
        .match_indices("<script")
        .map(|(i, _)| &html[i..])
        .collect();
    assert_eq!(scripts.len(), 1, "exactly one script element");
    let script = scripts[0];
    assert!(
        script.starts_with(&format!("<script src=\"{}?v=", paths::SCRIPT)),
        "{script:.80}"
    );
    assert!(script.contains("></script>"));
    let tag_end = script.find('>').unwrap();
    assert!(
        script[tag_end + 1..].starts_with("</script>"),
        "script element must be empty"
    );

    assert!(html.contains(&format!(
        "<link rel=\"stylesheet\" href=\"{}?v=",
        paths::STYLE
    )));
    assert_eq!(html.matches("rel=\"stylesheet\"").count(), 1);
    assert!(!html.contains("<style"), "no inline <style>");
    assert!(!html.contains("style="), "no style attributes");
    assert!(!has_event_handler(html), "no inline event handlers");
    assert!(!html.contains("javascript:"));
    assert!(
        !html.contains("//cdn") && !html.contains("https://fonts"),
        "no external resources"
    );
}

/// An ` onsomething=` attribute anywhere in the markup.
fn has_event_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(i, _)| {
        let rest = &html[i + 3..];
        let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        name_len > 0 && rest[name_len..].starts_with('=')
    })
}

#[tokio::test]
async fn consent_escapes_client_supplied_strings() {
    let scopes = vec!["mcp".to_owned(), "<b>scope</b>".to_owned()];
    let mut page = consent_page(&scopes, Some(HOSTILE));
    page.client_id = HOSTILE;
    page.redirect_origin = "https://evil.example\"><script>alert(2)</script>";
    page.request_id = "\" autofocus onfocus=\"alert(3)";
    let response = consent(&page);
    assert_eq!(response.status(), StatusCode::OK);
    assert_page_headers(&response);
    let html = body_of(response).await;

    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<b>scope</b>"));
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;&#34;&#39;&#38;")
            || html.contains("&lt;script&gt;alert(1)"),
        "{html}"
    );
    assert!(
        !html.contains("onfocus=\"alert"),
        "attribute breakout: {html}"
    );
    assert!(
        !html.contains("sent to</p>\n<p class=\"destination-origin\"><bdi>https://evil.example\">")
    );
}

#[tokio::test]
async fn consent_describes_scopes_in_plain_words_escaped() {
    let scopes = vec!["mcp".to_owned(), "admin".to_owned(), "billing".to_owned()];
    let descriptions = BTreeMap::from([
        (
            "mcp".to_owned(),
            "Use this MCP server's tools and resources".to_owned(),
        ),
        ("admin".to_owned(), HOSTILE.to_owned()),
        ("unused".to_owned(), "Not requested".to_owned()),
    ]);
    let mut page = consent_page(&scopes, Some("Claude"));
    page.scope_descriptions = &descriptions;
    let html = body_of(consent(&page)).await;
    assert!(
        html.contains("<code>mcp</code> <span class=\"scope-description\">Use this MCP server&#39;s tools and resources</span>")
            || html.contains("<code>mcp</code> <span class=\"scope-description\">Use this MCP server&#x27;s tools and resources</span>"),
        "{html}"
    );
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(
        html.contains("<code>billing</code></li>"),
        "a scope without a description shows its code alone: {html}"
    );
    assert!(!html.contains("Not requested"), "{html}");
}

#[tokio::test]
async fn consent_has_the_contract_elements_and_facts() {
    let scopes = vec!["mcp".to_owned(), "offline_access".to_owned()];
    let html = body_of(consent(&consent_page(&scopes, Some("Claude")))).await;
    for needle in [
        "id=\"approve\"",
        "id=\"deny\"",
        "id=\"status\"",
        "role=\"status\"",
        "aria-live=\"polite\"",
        "data-request-id=\"req-abc\"",
        "data-has-passkeys=\"true\"",
        "Notes MCP",
        "Claude",
        "as the application calls itself",
        "After approval you will be sent to",
        "https://claude.ai",
        "<code>mcp</code>",
        "<code>offline_access</code>",
        "https://notes.example.com/mcp",
        "client-123",
        "Registered itself",
    ] {
        assert!(html.contains(needle), "missing {needle}");
    }
    assert!(!html.contains("id=\"approve\" type=\"button\" class=\"btn btn-primary\" disabled"));
    assert!(!html.contains("application on this computer"));
    assert_self_contained(&html);
}

#[tokio::test]
async fn consent_without_passkeys_disables_approve_and_links_registration() {
    let scopes = vec!["mcp".to_owned()];
    let mut page = consent_page(&scopes, None);
    page.has_passkeys = false;
    page.pre_registered = true;
    page.redirect_origin = "http://localhost:33418";
    page.redirect_is_loopback = true;
    let html = body_of(consent(&page)).await;
    let approve = &html[html.find("id=\"approve\"").unwrap()..];
    let approve = &approve[..approve.find('>').unwrap()];
    assert!(approve.contains(" disabled"), "{approve}");
    assert!(html.contains("href=\"/passkey/register\""));
    assert!(html.contains("No passkey is registered yet"));
    assert!(html.contains("An unnamed client"));
    assert!(html.contains("Pre-registered client"));
    assert!(html.contains("application on this computer"));
    assert!(html.contains("http://localhost:33418"));
    assert!(!html.contains("Check before you approve"));
}

#[tokio::test]
async fn consent_for_a_metadata_document_client_shows_the_verified_host() {
    let scopes = vec!["mcp".to_owned()];
    let mut page = consent_page(&scopes, Some("Claude Code"));
    page.client_id = "https://claude.ai/oauth/claude-code-client-metadata";
    page.verified_host = Some("claude.ai");
    let html = body_of(consent(&page)).await;
    for needle in [
        "Verified: <bdi>claude.ai</bdi>",
        "id=\"verified-host\"",
        "metadata document on <bdi>claude.ai</bdi>",
        "Check before you approve",
        "<button id=\"approve\"",
        "<button id=\"deny\"",
    ] {
        assert!(html.contains(needle), "missing {needle}");
    }
    assert!(!html.contains("Registered itself"));
    assert!(!html.contains("Pre-registered client"));

    page.verified_host = Some(HOSTILE);
    let html = body_of(consent(&page)).await;
    assert!(!html.contains("<script>alert"));
}

#[tokio::test]
async fn register_page_has_the_contract_elements() {
    for has_passkeys in [false, true] {
        let response = register(&RegisterPage {
            app_name: "Notes <MCP>",
            has_passkeys,
        });
        assert_eq!(response.status(), StatusCode::OK);
        assert_page_headers(&response);
        let html = body_of(response).await;
        for needle in [
            "<input id=\"setup_token\"",
            "<input id=\"label\"",
            "<button id=\"register\"",
            "id=\"status\"",
            "role=\"status\"",
            "Notes &#60;MCP&#62;",
        ] {
            assert!(html.contains(needle), "missing {needle}");
        }
        assert!(html.contains(&format!("data-has-passkeys=\"{has_passkeys}\"")));
        assert_eq!(html.contains("already registered"), has_passkeys);
        assert!(!html.contains("Notes <MCP>"));
        assert_self_contained(&html);
    }
}

#[tokio::test]
async fn error_page_uses_the_status_and_escapes() {
    let response = error(&ErrorPage {
        app_name: "Notes MCP",
        status: StatusCode::BAD_REQUEST,
        title: "This connection request can't be used",
        message: HOSTILE,
        return_to: Some(ReturnLink {
            href: "https://claude.ai/cb?error=access_denied&state=<x>",
            origin: "https://claude.ai",
        }),
    });
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_page_headers(&response);
    let html = body_of(response).await;
    assert!(!html.contains("<script>alert"));
    assert!(
        html.contains("href=\"https://claude.ai/cb?error=access_denied&#38;state=&#60;x&#62;\""),
        "{html}"
    );
    assert!(html.contains("Return to <bdi>https://claude.ai</bdi>"));
    assert!(html.contains("Error 400"));
    assert_self_contained(&html);
}

#[tokio::test]
async fn error_page_never_links_to_a_non_http_url() {
    let response = error(&ErrorPage {
        app_name: "Notes MCP",
        status: StatusCode::SERVICE_UNAVAILABLE,
        title: "Temporarily unavailable",
        message: "Try again.",
        return_to: Some(ReturnLink {
            href: "javascript:alert(1)",
            origin: "x",
        }),
    });
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let html = body_of(response).await;
    assert!(!html.contains("javascript:"));
    assert!(!html.contains("Return to"));
    assert!(html.contains("You can close this window"));
}

#[tokio::test]
async fn static_assets_have_their_types_and_cache_headers() {
    for (response, content_type, needle) in [
        (
            script().await,
            "text/javascript; charset=utf-8",
            "navigator.credentials",
        ),
        (
            style().await,
            "text/css; charset=utf-8",
            "prefers-color-scheme: dark",
        ),
    ] {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, &CONTENT_TYPE), content_type);
        assert_eq!(header(&response, &X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header(&response, &CACHE_CONTROL), "public, max-age=3600");
        assert!(body_of(response).await.contains(needle));
    }
}

#[test]
fn the_script_uses_the_contract_endpoints_and_no_external_resources() {
    // The script is a static file: it spells each path itself, and must spell the router's.
    for endpoint in [
        paths::AUTHORIZE_CHALLENGE,
        paths::AUTHORIZE_APPROVE,
        paths::AUTHORIZE_DENY,
        paths::PASSKEY_REGISTER_APPROVAL,
        paths::PASSKEY_REGISTER_START,
        paths::PASSKEY_REGISTER_FINISH,
        paths::CONSOLE_SIGNIN_START,
        paths::CONSOLE_SIGNIN_FINISH,
        paths::CONSOLE_SIGNOUT,
        paths::CONSOLE_GRANTS_REVOKE,
        paths::CONSOLE_CLIENTS_DELETE,
        paths::CONSOLE_CLIENTS_REMOVE_UNAPPROVED,
        paths::CONSOLE_PASSKEYS_RENAME,
        paths::CONSOLE_PASSKEYS_REMOVE,
        paths::CONSOLE_PASSKEYS_ADD_START,
        paths::CONSOLE_PASSKEYS_ADD_FINISH,
    ] {
        assert!(SCRIPT.contains(&format!("\"{endpoint}\"")), "{endpoint}");
    }
    assert!(!SCRIPT.contains("innerHTML"), "the script writes text only");
    // The one URL in the script is in a message telling people where passkeys work.
    assert!(
        !SCRIPT.replace("http://localhost", "").contains("://"),
        "no external URLs"
    );
    assert!(!STYLE.contains("://") && !STYLE.contains("@import") && !STYLE.contains("url("));
}

#[test]
fn display_names_are_cleaned_and_bounded() {
    assert_eq!(display_name("  Claude \n Code "), "Claude Code");
    assert_eq!(display_name("evil\u{202E}cod.exe"), "evilcod.exe");
    let long = display_name(&"é".repeat(500));
    assert_eq!(long.chars().count(), MAX_CLIENT_NAME_CHARS + 1);
    assert!(long.ends_with('…'));
}

#[tokio::test]
async fn a_blank_client_name_counts_as_unnamed() {
    let scopes = vec![];
    let html = body_of(consent(&consent_page(&scopes, Some(" \u{200F} ")))).await;
    assert!(html.contains("An unnamed client"));
    assert!(html.contains("Basic access"));
}

#[test]
fn asset_urls_change_with_content() {
    assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
    let assets = Assets::new();
    assert!(assets.script.starts_with(paths::SCRIPT));
    assert!(assets.style.starts_with(paths::STYLE));
}

#[tokio::test]
async fn the_sign_in_view_without_passkeys_links_to_registration() {
    let html = body_of(console_login("Notes MCP", false)).await;
    assert!(html.contains(&format!("href=\"{}\"", paths::PASSKEY_REGISTER)));
    let html = body_of(console_login("Notes MCP", true)).await;
    assert!(!html.contains("No passkey is registered yet"));
}
