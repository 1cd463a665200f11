//! The browser tests' harness: a live server on a loopback port, headless Chromium driven over the
//! DevTools protocol with a virtual WebAuthn authenticator, and a small HTTP client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chromiumoxide::browser::BrowserConfig;
use chromiumoxide::cdp::browser_protocol::emulation::MediaFeature;
use chromiumoxide::cdp::browser_protocol::fetch::{
    self, EventRequestPaused, FulfillRequestParams, HeaderEntry, RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::network::ResourceType;
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::browser_protocol::web_authn::{
    self, AddVirtualAuthenticatorParams, AuthenticatorId, AuthenticatorProtocol,
    AuthenticatorTransport, ClearCredentialsParams, Credential, GetCredentialsParams,
    SetUserVerifiedParams, VirtualAuthenticatorOptions,
};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::layout::Point;
use chromiumoxide::listeners::EventStream;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Page, browser::Browser};
use futures::StreamExt;
use mcp_oauth::{McpOAuth, MemoryStore, OAuthConfig, PasskeyStore, TokenInfo};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use url::Url;

pub(crate) const APP_NAME: &str = "Acme Notes MCP";
pub(crate) const CLIENT_NAME: &str = "Example Desktop Client";
const STATIC_CLIENT_ID: &str = "browser-tests-static";
const STATIC_CLIENT_SECRET: &str = "browser-tests-static-secret-0123456789";

/// How long any one condition may take before the test fails. Generous: CI machines have two cores
/// and several browsers may start at once.
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
/// One poll of the page may take this long (mid-navigation it may not answer at all).
const ATTEMPT: Duration = Duration::from_secs(2);
/// The page size of the screenshots in the README.
const WIDTH: u32 = 1000;
const HEIGHT: u32 = 900;

// ---------------------------------------------------------------------------------------------
// Finding Chromium
// ---------------------------------------------------------------------------------------------

/// The Chromium to drive: `$CHROME` if set, else Debian's `/usr/bin/chromium`. Without one the test
/// prints one skip line and returns `None`, unless `MCP_OAUTH_REQUIRE_BROWSER=1` (CI), where a
/// missing browser is a failure.
pub(crate) fn chromium(test: &str) -> Option<PathBuf> {
    let (path, source) = match std::env::var_os("CHROME") {
        Some(path) if !path.is_empty() => (PathBuf::from(path), "$CHROME"),
        _ => (PathBuf::from("/usr/bin/chromium"), "the default path"),
    };
    if path.is_file() {
        return Some(path);
    }
    let hint = "install it with `apt-get install -y chromium` or point CHROME at a Chromium binary";
    if std::env::var("MCP_OAUTH_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!(
            "MCP_OAUTH_REQUIRE_BROWSER=1 but there is no Chromium at {} ({source}): {hint}",
            path.display()
        );
    }
    // Straight to stderr, not `eprintln!`: the test harness would swallow a passing test's output,
    // and a skip should be seen.
    let line = format!(
        "skipping browser test {test}: no Chromium at {} ({source}); {hint}\n",
        path.display()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    None
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// The layer served over real TCP on `127.0.0.1`, addressed as `http://localhost:{port}` (a passkey
/// relying party needs a host name, and localhost is a secure context).
pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) oauth: McpOAuth,
    pub(crate) store: MemoryStore,
    pub(crate) http: reqwest::Client,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The MCP stand-in behind the bearer guard: says who called.
fn mcp_routes() -> Router {
    Router::new().route(
        "/mcp",
        any(|caller: TokenInfo| async move {
            axum::Json(json!({ "client_id": caller.client_id, "scopes": caller.scopes }))
        }),
    )
}

/// A reply read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.body))
    }
}

impl Server {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://localhost:{port}");
        // No setup token in the configuration: one is generated, and `setup_url` carries it.
        let config = OAuthConfig::with_defaults(
            base.clone(),
            STATIC_CLIENT_ID,
            STATIC_CLIENT_SECRET,
            APP_NAME,
            "unused-in-memory.json",
        );
        let store = MemoryStore::new();
        let oauth = McpOAuth::builder(config)
            .stores(store.clone())
            .build()
            .expect("build the OAuth layer");
        let app = oauth.router(mcp_routes());
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serve");
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(WAIT)
            .build()
            .unwrap();
        Self {
            base,
            oauth,
            store,
            http,
            task,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn resource(&self) -> String {
        self.url("/mcp")
    }

    async fn read(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        Reply { status, body }
    }

    pub(crate) async fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        Self::read(request.send().await.unwrap()).await
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Reply {
        let response = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        Self::read(response).await
    }

    pub(crate) async fn post_form(&self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in pairs {
            form.append_pair(name, value);
        }
        let response = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish())
            .send()
            .await
            .unwrap();
        Self::read(response).await
    }

    /// Register a public client (PKCE, no secret) over HTTP with DCR; returns its id.
    pub(crate) async fn register_public_client(&self, redirect_uri: &str) -> String {
        let reply = self
            .post_json(
                "/register",
                &json!({
                    "redirect_uris": [redirect_uri],
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"],
                    "client_name": CLIENT_NAME,
                }),
            )
            .await;
        assert_eq!(reply.status, 201, "POST /register: {}", reply.body);
        reply.json()["client_id"].as_str().unwrap().to_owned()
    }

    /// The passkeys the server has stored.
    pub(crate) async fn passkeys(&self) -> Vec<mcp_oauth::store::PasskeyRecord> {
        PasskeyStore::list(&self.store).await.unwrap()
    }
}

/// A PKCE verifier and its S256 challenge.
pub(crate) fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// A loopback callback URL on a port that was free a moment ago. Nothing listens there: the browser
/// tests intercept the navigation before it leaves the browser.
pub(crate) async fn loopback_callback() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}/callback")
}

/// One query parameter of a URL.
pub(crate) fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

// ---------------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------------

/// Headless Chromium with one tab and a virtual platform authenticator (CTAP2, internal transport,
/// resident keys, user verification that succeeds). The process is killed on every path: closed
/// politely by [`Chromium::close`], killed by `kill_on_drop` when a failing test unwinds.
pub(crate) struct Chromium {
    pub(crate) page: Page,
    pub(crate) authenticator: AuthenticatorId,
    browser: Browser,
    handler: JoinHandle<()>,
    /// Dropped after the browser (fields drop in order), so the profile outlives the process.
    _profile: tempfile::TempDir,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.handler.abort();
    }
}

impl Chromium {
    pub(crate) async fn launch(executable: PathBuf) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let viewport = Viewport {
            width: WIDTH,
            height: HEIGHT,
            device_scale_factor: Some(1.0),
            emulating_mobile: false,
            is_landscape: false,
            has_touch: false,
        };
        // Only the flags asked for (chromiumoxide's defaults are off): headless, no sandbox (tests
        // run as root in containers), nothing that phones home, and no proxy, so only 127.0.0.1 is
        // ever reached. HTTPS upgrades stay off so the loopback callback is requested as registered.
        let config = BrowserConfig::builder()
            .chrome_executable(executable)
            .disable_default_args()
            .new_headless_mode()
            .no_sandbox()
            .user_data_dir(profile.path())
            .window_size(WIDTH, HEIGHT)
            .viewport(viewport)
            .launch_timeout(WAIT)
            .request_timeout(WAIT)
            .args([
                "disable-gpu",
                "disable-dev-shm-usage",
                "disable-background-networking",
                "disable-component-update",
                "disable-sync",
                "disable-default-apps",
                "disable-client-side-phishing-detection",
                "disable-breakpad",
                "disable-crash-reporter",
                "no-first-run",
                "no-default-browser-check",
                "no-proxy-server",
                "password-store=basic",
                "use-mock-keychain",
            ])
            .arg((
                "disable-features",
                "HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
            ))
            .build()
            .expect("browser configuration");
        let (browser, mut handler) = within("launch Chromium", Browser::launch(config)).await;
        // The handler drives the DevTools connection. Messages this chromiumoxide cannot parse (a
        // newer Chromium's events) are errors to skip, not a reason to stop.
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        let mut chromium = Self {
            page: within("open a tab", browser.new_page("about:blank")).await,
            authenticator: AuthenticatorId::new(String::new()),
            browser,
            handler,
            _profile: profile,
        };
        chromium.authenticator = chromium.add_authenticator().await;
        within(
            "install the problem recorder",
            chromium.page.evaluate_on_new_document(RECORD_PROBLEMS),
        )
        .await;
        chromium
    }

    /// Fail if the page broke its own CSP or threw: a page that works only because a test doesn't
    /// look at the console is broken for somebody.
    pub(crate) async fn assert_no_page_problems(&self) {
        let problems = self
            .eval("window.__problems || ['the problem recorder is missing']")
            .await;
        assert_eq!(problems, json!([]), "problems on {}", self.location().await);
    }

    async fn add_authenticator(&self) -> AuthenticatorId {
        within(
            "WebAuthn.enable",
            self.page.execute(web_authn::EnableParams::default()),
        )
        .await;
        let mut options = VirtualAuthenticatorOptions::new(
            AuthenticatorProtocol::Ctap2,
            AuthenticatorTransport::Internal,
        );
        options.has_resident_key = Some(true);
        options.has_user_verification = Some(true);
        options.is_user_verified = Some(true);
        options.automatic_presence_simulation = Some(true);
        within(
            "WebAuthn.addVirtualAuthenticator",
            self.page
                .execute(AddVirtualAuthenticatorParams::new(options)),
        )
        .await
        .result
        .authenticator_id
    }

    /// The credentials the virtual authenticator holds.
    pub(crate) async fn credentials(&self) -> Vec<Credential> {
        within(
            "WebAuthn.getCredentials",
            self.page
                .execute(GetCredentialsParams::new(self.authenticator.clone())),
        )
        .await
        .result
        .credentials
    }

    /// Forget every credential the authenticator holds: the owner's device is lost.
    pub(crate) async fn clear_credentials(&self) {
        within(
            "WebAuthn.clearCredentials",
            self.page
                .execute(ClearCredentialsParams::new(self.authenticator.clone())),
        )
        .await;
    }

    /// Make the authenticator's user verification succeed or fail (the owner's fingerprint is, or
    /// is not, recognised).
    pub(crate) async fn set_user_verified(&self, verified: bool) {
        within(
            "WebAuthn.setUserVerified",
            self.page.execute(SetUserVerifiedParams::new(
                self.authenticator.clone(),
                verified,
            )),
        )
        .await;
    }

    /// Close the browser and wait for its process to end.
    pub(crate) async fn close(mut self) {
        let closed = tokio::time::timeout(Duration::from_secs(5), self.browser.close()).await;
        let exited = match closed {
            Ok(Ok(_)) => tokio::time::timeout(Duration::from_secs(5), self.browser.wait())
                .await
                .is_ok(),
            _ => false,
        };
        if !exited {
            let _ = self.browser.kill().await;
        }
    }

    /// Navigate and wait for the load event.
    pub(crate) async fn goto(&self, url: &str) {
        within(&format!("navigate to {url}"), self.page.goto(url)).await;
    }

    /// Reload and wait for the load event.
    pub(crate) async fn reload(&self) {
        within("reload", self.page.reload()).await;
    }

    /// Evaluate a JavaScript expression; `None` while the page cannot answer (mid-navigation, when
    /// chromiumoxide may wait for a new execution context).
    pub(crate) async fn try_eval(&self, expression: &str) -> Option<Value> {
        match tokio::time::timeout(ATTEMPT, self.page.evaluate(expression)).await {
            Ok(Ok(result)) => result.into_value::<Value>().ok(),
            _ => None,
        }
    }

    pub(crate) async fn eval(&self, expression: &str) -> Value {
        within(
            &format!("evaluate {expression}"),
            self.page.evaluate(expression),
        )
        .await
        .into_value::<Value>()
        .unwrap_or(Value::Null)
    }

    /// Poll `expression` until it gives a truthy value (not null, false, "" or 0), and return it.
    pub(crate) async fn wait_for(&self, what: &str, expression: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = Value::Null;
        loop {
            if let Some(value) = self.try_eval(expression).await {
                if truthy(&value) {
                    return value;
                }
                last = value;
            }
            if tokio::time::Instant::now() >= deadline {
                let page = self.try_eval(SNAPSHOT).await.unwrap_or(Value::Null);
                panic!(
                    "timed out after {WAIT:?} waiting for {what}; last value {last}; page {page}"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait until the page's script has run (the DOM is complete) and `selector` exists.
    pub(crate) async fn wait_ready(&self, selector: &str) {
        let expression = format!(
            "document.readyState === 'complete' && !!document.querySelector({})",
            js_string(selector)
        );
        self.wait_for(&format!("{selector} on a loaded page"), &expression)
            .await;
    }

    /// Wait until `selector` is at rest: the pages scroll smoothly to an error message, and a mouse
    /// press aimed at a moving button lands beside it.
    async fn wait_still(&self, selector: &str) {
        let expression = format!(
            "new Promise(done => {{ \
               const element = document.querySelector({}); \
               if (!element) return done(false); \
               const before = JSON.stringify(element.getBoundingClientRect()); \
               requestAnimationFrame(() => requestAnimationFrame(() => \
                 done(JSON.stringify(element.getBoundingClientRect()) === before))); }})",
            js_string(selector)
        );
        self.wait_for(&format!("{selector} to stop moving"), &expression)
            .await;
    }

    /// Click an element the way a person would: scroll it into view, press the mouse on it.
    pub(crate) async fn click(&self, selector: &str) {
        self.wait_still(selector).await;
        let element = within(
            &format!("find {selector}"),
            self.page.find_element(selector),
        )
        .await;
        within(&format!("click {selector}"), element.click()).await;
    }

    /// Type into an input with key events, replacing what was there.
    pub(crate) async fn type_into(&self, selector: &str, text: &str) {
        self.eval(&format!(
            "document.querySelector({}).value = ''",
            js_string(selector)
        ))
        .await;
        self.wait_still(selector).await;
        let element = within(
            &format!("find {selector}"),
            self.page.find_element(selector),
        )
        .await;
        within(&format!("focus {selector}"), element.click()).await;
        within(&format!("type into {selector}"), element.type_str(text)).await;
    }

    /// `location.href` as the page sees it.
    pub(crate) async fn location(&self) -> String {
        self.eval("location.href")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's visible text.
    pub(crate) async fn text(&self) -> String {
        self.eval("document.body.innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Wait until `#status` settles on success or error; returns (kind, text).
    pub(crate) async fn settled_status(&self) -> (String, String) {
        let value = self
            .wait_for(
                "#status to report success or an error",
                "(() => { const s = document.getElementById('status'); \
                 return s && (s.dataset.kind === 'success' || s.dataset.kind === 'error') \
                 ? { kind: s.dataset.kind, text: s.textContent } : null; })()",
            )
            .await;
        (
            value["kind"].as_str().unwrap_or_default().to_owned(),
            value["text"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Pause every request to URLs matching `pattern` (CDP `Fetch` wildcards: `*` and `?`) before it
    /// leaves the browser, and return the stream of paused requests.
    pub(crate) async fn intercept(&self, pattern: &str) -> EventStream<EventRequestPaused> {
        let events = within(
            "listen for Fetch.requestPaused",
            self.page.event_listener::<EventRequestPaused>(),
        )
        .await;
        let enable = fetch::EnableParams::builder()
            .pattern(
                RequestPattern::builder()
                    .url_pattern(pattern)
                    .request_stage(RequestStage::Request)
                    .build(),
            )
            .build();
        within("Fetch.enable", self.page.execute(enable)).await;
        events
    }

    /// Wait for the tab to navigate to an intercepted URL; answer it with a small page, wait until the
    /// tab shows it, and return the URL.
    pub(crate) async fn captured_navigation(
        &self,
        events: &mut EventStream<EventRequestPaused>,
    ) -> Url {
        let paused = match tokio::time::timeout(WAIT, events.next()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("the DevTools event stream ended"),
            Err(_) => {
                let page = self.try_eval(SNAPSHOT).await.unwrap_or(Value::Null);
                panic!("no navigation to the callback within {WAIT:?}; page {page}")
            }
        };
        assert_eq!(
            paused.resource_type,
            ResourceType::Document,
            "the callback must be a top-level navigation, not a fetch: {}",
            paused.request.url
        );
        let url = Url::parse(&paused.request.url).unwrap();
        let body = STANDARD.encode("<!doctype html><title>callback</title><p>received</p>");
        let fulfil = FulfillRequestParams::builder()
            .request_id(paused.request_id.clone())
            .response_code(200)
            .response_header(HeaderEntry::new("Content-Type", "text/html"))
            .body(body)
            .build()
            .unwrap();
        within("Fetch.fulfillRequest", self.page.execute(fulfil)).await;
        let expected = js_string(url.as_str());
        self.wait_for(
            "the tab to show the callback",
            &format!("location.href === {expected} && document.readyState === 'complete'"),
        )
        .await;
        url
    }

    /// With `MCP_OAUTH_SCREENSHOTS=1`, save the page as `docs/screenshots/{name}.png`.
    pub(crate) async fn screenshot(&self, name: &str) {
        if std::env::var("MCP_OAUTH_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        // No hover, focus ring, caret or half-finished transition: the same picture every run.
        within(
            "move the mouse away",
            self.page.move_mouse(Point::new(0.0, 0.0)),
        )
        .await;
        within(
            "emulate reduced motion",
            self.page.emulate_media_features(vec![MediaFeature::new(
                "prefers-reduced-motion",
                "reduce",
            )]),
        )
        .await;
        self.eval(
            "(() => { if (document.activeElement) document.activeElement.blur(); \
             return new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(true)))); })()",
        )
        .await;
        let params = ScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Png)
            .full_page(true)
            .build();
        within(
            &format!("screenshot {}", path.display()),
            self.page.save_screenshot(params, &path),
        )
        .await;
        eprintln!("saved {}", path.display());
    }
}

/// Await one DevTools call, bounded: a browser that stops answering (a navigation paused forever,
/// say) fails the test with a message instead of hanging it.
async fn within<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> T {
    match tokio::time::timeout(WAIT, call).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("{what}: {error}"),
        Err(_) => panic!("{what}: no answer from Chromium within {WAIT:?}"),
    }
}

/// Installed in every document before the page's own script: records CSP violations and uncaught
/// errors.
const RECORD_PROBLEMS: &str = "window.__problems = []; \
    document.addEventListener('securitypolicyviolation', e => \
        window.__problems.push('CSP blocked ' + e.blockedURI + ' (' + e.violatedDirective + ')')); \
    window.addEventListener('error', e => window.__problems.push('error: ' + e.message)); \
    window.addEventListener('unhandledrejection', e => \
        window.__problems.push('unhandled rejection: ' + e.reason));";

/// What the page shows, for failure messages.
const SNAPSHOT: &str = "(() => ({ href: location.href, title: document.title, \
    status: (document.getElementById('status') || {}).textContent, \
    text: document.body ? document.body.innerText.slice(0, 600) : null }))()";

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// CDP's standard base64 as the unpadded base64url WebAuthn JSON (and the stores) use.
pub(crate) fn base64url(standard: &str) -> String {
    URL_SAFE_NO_PAD.encode(STANDARD.decode(standard).unwrap())
}

/// A JavaScript string literal.
pub(crate) fn js_string(value: &str) -> String {
    Value::String(value.to_owned()).to_string()
}

/// Register the owner's first passkey through the registration page, as a person would: open the
/// setup link, then press the button. Returns the setup token.
pub(crate) async fn register_first_passkey(server: &Server, chromium: &Chromium) -> String {
    let setup_url = server
        .oauth
        .setup_url()
        .await
        .unwrap()
        .expect("a setup URL while no passkey is registered");
    let token = setup_url
        .split_once("#setup_token=")
        .expect("the setup URL carries the token in its fragment")
        .1
        .to_owned();
    chromium.goto(&setup_url).await;
    chromium.wait_ready("#register").await;
    chromium
        .wait_for(
            "the setup token to be taken from the fragment",
            &format!(
                "document.getElementById('setup_token').value === {}",
                js_string(&token)
            ),
        )
        .await;
    chromium.click("#register").await;
    let (kind, text) = chromium.settled_status().await;
    assert_eq!(kind, "success", "registration failed: {text}");
    assert!(text.contains("registered"), "{text}");
    chromium.assert_no_page_problems().await;
    token
}
