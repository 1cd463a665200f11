//! Real browser, real pages: headless Chromium, driven over the DevTools protocol, registers the
//! owner's passkey and approves or denies clients on the server's own pages, with a CDP virtual
//! authenticator (CTAP2, internal transport, resident key, user verification) standing in for the
//! owner's device. Each test serves the layer on a loopback port as `http://localhost:{port}`.
//!
//! Needs Chromium: `$CHROME`, else `/usr/bin/chromium` (Debian: `apt-get install -y chromium`).
//! Without it each test prints one skip line and passes, unless `MCP_OAUTH_REQUIRE_BROWSER=1`.
//! `MCP_OAUTH_SCREENSHOTS=1` also saves the pages to `docs/screenshots/` for the README.
#![cfg(feature = "memory")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "browser/harness.rs"]
mod harness;

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use harness::{
    APP_NAME, CLIENT_NAME, Chromium, Server, js_string, loopback_callback, pkce, query_param,
    register_first_passkey,
};

/// A whole test may take this long before it fails as hung (the browser is killed either way).
const TEST_TIMEOUT: Duration = Duration::from_secs(90);

/// Run `body` with a fresh server and browser, or skip without Chromium. The browser is closed
/// after the body; on a failure it is killed as the test unwinds.
async fn with_browser<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Server, Chromium) -> Fut,
    Fut: Future<Output = Chromium>,
{
    let Some(executable) = harness::chromium(test) else {
        return;
    };
    let run = async {
        let server = Server::start().await;
        let chromium = Chromium::launch(executable).await;
        body(server, chromium).await.close().await;
    };
    if tokio::time::timeout(TEST_TIMEOUT, run).await.is_err() {
        panic!("{test} did not finish within {TEST_TIMEOUT:?}");
    }
}

/// An authorization request URL for a public client with PKCE S256.
fn authorize_url(server: &Server, client_id: &str, redirect_uri: &str, state: &str) -> String {
    let (_, challenge) = pkce();
    authorize_url_with(server, client_id, redirect_uri, state, &challenge)
}

fn authorize_url_with(
    server: &Server,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
    challenge: &str,
) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state)
        .append_pair("scope", "mcp")
        .append_pair("resource", &server.resource());
    server.url(&format!("/authorize?{}", query.finish()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_passkey_is_registered_with_the_setup_token_once() {
    with_browser(
        "first_passkey_is_registered_with_the_setup_token_once",
        |server, chromium| async move {
            let setup_url = server.oauth.setup_url().await.unwrap().expect("setup URL");
            let token = setup_url.split_once("#setup_token=").unwrap().1.to_owned();

            // The setup link fills the token in and takes it out of the address bar.
            chromium.goto(&setup_url).await;
            chromium.wait_ready("#register").await;
            chromium
                .wait_for(
                    "#setup_token to be filled from the link",
                    &format!(
                        "document.getElementById('setup_token').value === {}",
                        js_string(&token)
                    ),
                )
                .await;
            assert_eq!(chromium.eval("location.hash").await, "");
            assert_eq!(chromium.location().await, server.url("/passkey/register"));
            chromium.type_into("#label", "Work laptop").await;
            chromium.screenshot("register").await;
            chromium.assert_no_page_problems().await;

            chromium.click("#register").await;
            let (kind, text) = chromium.settled_status().await;
            assert_eq!(kind, "success", "{text}");
            assert!(text.contains("registered"), "{text}");
            assert!(
                text.contains("Work laptop"),
                "the status names the passkey: {text}"
            );

            let stored = server.passkeys().await;
            assert_eq!(stored.len(), 1);
            assert_eq!(stored[0].label, "Work laptop");
            let held = chromium.credentials().await;
            assert_eq!(held.len(), 1, "the authenticator holds one passkey");
            assert_eq!(held[0].rp_id.as_deref(), Some("localhost"));
            assert_eq!(
                harness::base64url(held[0].credential_id.as_ref()),
                stored[0].credential_id,
                "the server stored the credential the authenticator made"
            );
            assert!(
                server.oauth.setup_url().await.unwrap().is_none(),
                "the setup token is used up"
            );

            // The same token again: the server refuses it, and nothing more is stored.
            chromium.reload().await;
            chromium.wait_ready("#register").await;
            assert_eq!(
                chromium
                    .eval("document.getElementById('registration').dataset.hasPasskeys")
                    .await,
                "true"
            );
            chromium.type_into("#setup_token", &token).await;
            chromium.click("#register").await;
            let (kind, text) = chromium.settled_status().await;
            assert_eq!(kind, "error", "a used setup token must be refused: {text}");
            assert!(text.contains("already used"), "{text}");
            assert_eq!(
                server.passkeys().await.len(),
                1,
                "no second passkey is stored"
            );
            assert_eq!(
                chromium.credentials().await.len(),
                1,
                "no second passkey is created"
            );
            chromium.assert_no_page_problems().await;
            chromium
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_with_the_passkey_sends_a_code_that_buys_a_working_token() {
    with_browser(
        "approving_with_the_passkey_sends_a_code_that_buys_a_working_token",
        |server, chromium| async move {
            register_first_passkey(&server, &chromium).await;
            let callback = loopback_callback().await;
            let client_id = server.register_public_client(&callback).await;
            let (verifier, challenge) = pkce();
            let state = "state-approve-7f3a";
            let mut navigations = chromium.intercept(&format!("{callback}*")).await;

            chromium
                .goto(&authorize_url_with(
                    &server, &client_id, &callback, state, &challenge,
                ))
                .await;
            chromium.wait_ready("#approve").await;
            let text = chromium.text().await;
            let callback_origin = callback.trim_end_matches("/callback");
            for expected in [APP_NAME, CLIENT_NAME, callback_origin, "mcp"] {
                assert!(
                    text.contains(expected),
                    "the consent page names {expected:?}: {text}"
                );
            }
            assert_eq!(
                chromium
                    .eval("document.getElementById('approve').disabled")
                    .await,
                false
            );
            chromium.screenshot("consent").await;
            chromium.assert_no_page_problems().await;

            // A failed passkey prompt leaves the request open: the page says so and lets the owner
            // try again.
            chromium.set_user_verified(false).await;
            chromium.click("#approve").await;
            let (kind, text) = chromium.settled_status().await;
            assert_eq!(kind, "error", "{text}");
            assert!(text.contains("try again"), "{text}");
            chromium
                .wait_for(
                    "the buttons to be enabled again",
                    "!document.getElementById('approve').disabled && \
                     !document.getElementById('deny').disabled",
                )
                .await;
            chromium.set_user_verified(true).await;

            let signatures = chromium.credentials().await[0].sign_count;
            chromium.click("#approve").await;
            let redirect = chromium.captured_navigation(&mut navigations).await;
            assert!(
                redirect.as_str().starts_with(&format!("{callback}?")),
                "{redirect}"
            );
            let code =
                query_param(&redirect, "code").unwrap_or_else(|| panic!("no code: {redirect}"));
            assert_eq!(query_param(&redirect, "state").as_deref(), Some(state));
            assert_eq!(query_param(&redirect, "iss"), Some(server.base.clone()));
            assert_eq!(query_param(&redirect, "error"), None);

            // The authenticator really signed, and the server recorded the passkey's use.
            assert!(chromium.credentials().await[0].sign_count > signatures);
            assert!(server.passkeys().await[0].last_used_at.is_some());

            let access_token =
                exchange_code(&server, &client_id, &code, &verifier, &callback).await;

            assert_eq!(server.get("/mcp", None).await.status, 401);
            let mcp = server.get("/mcp", Some(&access_token)).await;
            assert_eq!(mcp.status, 200, "GET /mcp with the token: {}", mcp.body);
            assert_eq!(mcp.json()["client_id"], client_id.as_str());
            chromium
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denying_sends_access_denied_to_the_client() {
    with_browser(
        "denying_sends_access_denied_to_the_client",
        |server, chromium| async move {
            register_first_passkey(&server, &chromium).await;
            let callback = loopback_callback().await;
            let client_id = server.register_public_client(&callback).await;
            let state = "state-deny-91c2";
            let mut navigations = chromium.intercept(&format!("{callback}*")).await;

            chromium
                .goto(&authorize_url(&server, &client_id, &callback, state))
                .await;
            chromium.wait_ready("#deny").await;
            chromium.click("#deny").await;

            let redirect = chromium.captured_navigation(&mut navigations).await;
            assert!(
                redirect.as_str().starts_with(&format!("{callback}?")),
                "{redirect}"
            );
            assert_eq!(
                query_param(&redirect, "error").as_deref(),
                Some("access_denied")
            );
            assert_eq!(query_param(&redirect, "state").as_deref(), Some(state));
            assert_eq!(query_param(&redirect, "iss"), Some(server.base.clone()));
            assert_eq!(query_param(&redirect, "code"), None);
            chromium
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_redirect_uri_gets_an_error_page_and_no_redirect() {
    with_browser(
        "an_unregistered_redirect_uri_gets_an_error_page_and_no_redirect",
        |server, chromium| async move {
            register_first_passkey(&server, &chromium).await;
            let callback = loopback_callback().await;
            let client_id = server.register_public_client(&callback).await;
            let foreign = "https://attacker.example/callback";
            // Any request to either address would be a redirect the server must not make.
            let mut to_foreign = chromium.intercept("https://attacker.example/*").await;

            chromium
                .goto(&authorize_url(
                    &server,
                    &client_id,
                    foreign,
                    "state-bad-3e1d",
                ))
                .await;
            chromium.wait_ready("#error").await;
            let status = chromium
                .eval("performance.getEntriesByType('navigation')[0].responseStatus")
                .await;
            assert_eq!(status, 400, "the error page's HTTP status");
            assert_eq!(
                chromium
                    .eval("document.getElementById('approve') === null")
                    .await,
                true
            );
            assert_eq!(
                chromium
                    .eval("document.querySelector('a[href*=\"attacker.example\"]') === null")
                    .await,
                true,
                "no link to the unregistered redirect URI"
            );
            let text = chromium.text().await;
            assert!(text.contains(APP_NAME), "{text}");
            chromium.screenshot("error").await;
            chromium.assert_no_page_problems().await;

            // The page stays put: no script or link takes the browser away. A short window is the only
            // way to observe an absence; the load event has already fired.
            let nothing =
                tokio::time::timeout(Duration::from_millis(1500), to_foreign.next()).await;
            assert!(
                nothing.is_err(),
                "the browser was sent to the unregistered redirect URI"
            );
            let location = chromium.location().await;
            assert!(
                location.starts_with(&server.url("/authorize?")),
                "the browser left the server: {location}"
            );
            chromium
        },
    )
    .await;
}

/// Exchange a public client's code at `/token`; returns the access token.
async fn exchange_code(
    server: &Server,
    client_id: &str,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> String {
    let token = server
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("client_id", client_id),
                ("redirect_uri", redirect_uri),
                ("resource", &server.resource()),
            ],
        )
        .await;
    assert_eq!(token.status, 200, "POST /token: {}", token.body);
    token.json()["access_token"].as_str().unwrap().to_owned()
}

/// Connect a public client through the consent page; returns (client id, access token).
async fn connect_client(server: &Server, chromium: &Chromium) -> (String, String) {
    let callback = loopback_callback().await;
    let client_id = server.register_public_client(&callback).await;
    let (verifier, challenge) = pkce();
    let mut navigations = chromium.intercept(&format!("{callback}*")).await;
    chromium
        .goto(&authorize_url_with(
            server,
            &client_id,
            &callback,
            "state-console",
            &challenge,
        ))
        .await;
    chromium.wait_ready("#approve").await;
    chromium.click("#approve").await;
    let redirect = chromium.captured_navigation(&mut navigations).await;
    let code = query_param(&redirect, "code").unwrap_or_else(|| panic!("no code: {redirect}"));
    let access_token = exchange_code(server, &client_id, &code, &verifier, &callback).await;
    (client_id, access_token)
}

/// Sign in to the console with the virtual authenticator and wait for the signed-in page.
async fn sign_in_to_console(server: &Server, chromium: &Chromium) {
    chromium.goto(&server.url("/oauth/console")).await;
    chromium.wait_ready("#console-signin").await;
    chromium.click("#console-signin").await;
    chromium.wait_ready("#console").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_revokes_a_grant_and_replaces_a_lost_passkey_in_the_console() {
    with_browser(
        "the_owner_revokes_a_grant_and_replaces_a_lost_passkey_in_the_console",
        |server, chromium| async move {
            register_first_passkey(&server, &chromium).await;
            let (client_id, access_token) = connect_client(&server, &chromium).await;
            assert_eq!(server.get("/mcp", Some(&access_token)).await.status, 200);
            sign_in_to_console(&server, &chromium).await;
            let text = chromium.text().await;
            for expected in [
                CLIENT_NAME,
                client_id.as_str(),
                "Connection doctor",
                "First MCP request",
            ] {
                assert!(
                    text.contains(expected),
                    "the console shows {expected:?}: {text}"
                );
            }
            chromium.screenshot("console").await;
            chromium.assert_no_page_problems().await;

            // A registration the owner never approves, listed once the console reloads.
            let stray = server
                .register_public_client("http://127.0.0.1:9/callback")
                .await;

            // Revoke the client's grant: its next MCP call fails.
            chromium.click("#grants .revoke-grant").await;
            let (kind, text) = chromium.settled_status().await;
            assert_eq!(kind, "success", "{text}");
            let mcp = server.get("/mcp", Some(&access_token)).await;
            assert_eq!(
                mcp.status, 401,
                "the revoked token still works: {}",
                mcp.body
            );
            chromium.wait_ready("#no-grants").await;
            chromium.wait_ready("#remove-unapproved").await;

            // Clear the registration nobody approved; the approved client stays listed.
            chromium.click("#remove-unapproved").await;
            let (kind, text) = chromium.settled_status().await;
            assert_eq!(kind, "success", "{text}");
            chromium
                .wait_for(
                    "the console without never-approved clients",
                    "document.readyState === 'complete' && !!document.querySelector('#console') \
                     && !document.querySelector('#remove-unapproved')",
                )
                .await;
            let clients = chromium
                .eval("document.querySelector('#clients').innerText")
                .await;
            let clients = clients.as_str().unwrap_or_default();
            assert!(
                !clients.contains(&stray),
                "the stray client is gone: {clients}"
            );
            assert!(
                clients.contains(&client_id),
                "the approved client stays: {clients}"
            );

            // The owner's device is lost; from the still signed-in console they add a new passkey.
            chromium.clear_credentials().await;
            chromium.type_into("#new-passkey-label", "Backup key").await;
            chromium.click("#add-passkey").await;
            let (kind, text) = chromium.settled_status().await;
            assert_eq!(kind, "success", "{text}");
            assert_eq!(server.passkeys().await.len(), 2);
            chromium
                .wait_ready("#passkeys tr.passkey:nth-child(2) .remove-passkey")
                .await;

            // Remove the lost one; the session it signed in ends with it.
            chromium
                .click("#passkeys tr.passkey:first-child .remove-passkey")
                .await;
            let (kind, text) = chromium.settled_status().await;
            assert_eq!(kind, "success", "{text}");
            let passkeys = server.passkeys().await;
            assert_eq!(passkeys.len(), 1);
            assert_eq!(passkeys[0].label, "Backup key");
            chromium.wait_ready("#console-signin").await;

            // The new passkey signs in; being the only one, it cannot be removed.
            sign_in_to_console(&server, &chromium).await;
            assert_eq!(
                chromium
                    .eval("document.querySelectorAll('#passkeys .remove-passkey').length")
                    .await,
                0
            );
            chromium.assert_no_page_problems().await;
            chromium
        },
    )
    .await;
}
