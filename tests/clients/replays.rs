//! Recorded request shapes of real clients (spec-checklist §6.1, §6.3), replayed over HTTP against
//! the live server, each from the first unauthenticated MCP request to a working MCP session.

use serde_json::{Value, json};
use url::Url;

use super::live::*;

const CLAUDE_CALLBACK: &str = "https://claude.ai/api/mcp/auth_callback";
const CHATGPT_CALLBACK: &str = "https://chatgpt.com/connector_platform_oauth_redirect";

/// The unauthenticated MCP request every client starts with; returns the `WWW-Authenticate`.
async fn probe(server: &LiveServer, user_agent: &str) -> String {
    let reply = server
        .post_json(
            &server.mcp_url,
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "probe", "version": "0"}}}),
            &[
                ("user-agent", user_agent),
                ("accept", "application/json, text/event-stream"),
            ],
        )
        .await
        .expect(401);
    reply
        .header("www-authenticate")
        .expect("a challenge")
        .to_owned()
}

/// Open the authorization URL in the "browser", approve, and return the redirect.
async fn authorize(server: &LiveServer, endpoint: &str, params: &[(&str, &str)]) -> Url {
    let mut url = Url::parse(endpoint).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    server.approve_in_browser(url.as_str()).await
}

fn token_pair(reply: &Value) -> (String, String) {
    assert_eq!(reply["token_type"], "Bearer", "{reply}");
    (
        reply["access_token"].as_str().unwrap().to_owned(),
        reply["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// Claude.ai's connector backend talking to a server it treats as 2025-03-26: it fetches only the
/// root authorization server metadata (no protected resource metadata), uses the default
/// `/register`, `/authorize`, `/token` at the origin, sends no `resource` anywhere, and registers
/// with its 2025-06 body (`client_name` and `scope` "claudeai", public client).
#[tokio::test]
async fn claude_ai_2025_03_26_root_discovery_and_default_endpoints() {
    let server = LiveServer::start(|_| {}).await;
    probe(&server, "python-httpx/0.28.1").await;

    let metadata = server
        .get(
            &server.url("/.well-known/oauth-authorization-server"),
            &[
                ("user-agent", "python-httpx/0.28.1"),
                ("mcp-protocol-version", "2025-03-26"),
            ],
        )
        .await
        .expect(200)
        .json();
    // The 2025-03-26 defaults and the metadata agree, so either reading works.
    for (field, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("registration_endpoint", "/register"),
    ] {
        assert_eq!(metadata[field], server.url(path), "{field}");
    }

    let client = server
        .post_json(
            &server.url("/register"),
            &json!({
                "client_name": "claudeai",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "scope": "claudeai",
                "redirect_uris": [CLAUDE_CALLBACK]
            }),
            &[("user-agent", "python-httpx/0.28.1")],
        )
        .await
        .expect(201)
        .json();
    assert!(client.get("client_secret").is_none(), "{client}");
    let client_id = client["client_id"].as_str().unwrap();

    let (verifier, challenge) = pkce();
    let redirect = authorize(
        &server,
        &server.url("/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", CLAUDE_CALLBACK),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "claude-state"),
            ("scope", "claudeai"),
        ],
    )
    .await;
    assert!(redirect.as_str().starts_with(CLAUDE_CALLBACK), "{redirect}");
    assert_eq!(
        query_param(&redirect, "state").as_deref(),
        Some("claude-state")
    );
    let code = query_param(&redirect, "code").unwrap();

    let tokens = server
        .post_form(
            &server.url("/token"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", client_id),
                ("redirect_uri", CLAUDE_CALLBACK),
            ],
            &[("user-agent", "python-httpx/0.28.1")],
        )
        .await
        .expect(200)
        .json();
    // "claudeai" is unknown: ignored, and the default scope granted.
    assert_eq!(tokens["scope"], "mcp");
    let (access, refresh) = token_pair(&tokens);

    // The token is bound to the default resource, which is this MCP endpoint.
    let caller = server.whoami(&access, "2025-03-26").await;
    assert_eq!(caller["client_id"], client_id);

    let refreshed = server
        .post_form(
            &server.url("/token"),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", client_id),
            ],
            &[("user-agent", "python-httpx/0.28.1")],
        )
        .await
        .expect(200)
        .json();
    let (access, _) = token_pair(&refreshed);
    assert_eq!(
        server.whoami(&access, "2025-03-26").await["client_id"],
        client_id
    );
    let seen = server.seen();
    assert!(
        !seen
            .iter()
            .any(|s| s.path.starts_with("/.well-known/oauth-protected-resource")),
        "{}",
        server.trace()
    );
    let authorization = seen.iter().find(|s| s.path == "/authorize").unwrap();
    assert_eq!(authorization.query("client_id"), Some(client_id));
    assert_eq!(authorization.query("resource"), None);
    assert!(
        seen.iter()
            .filter(|s| s.path == "/token")
            .all(|s| s.form("resource").is_none())
    );
}

/// ChatGPT: follows the challenge to the protected resource metadata, tries each listed
/// authorization server, logs in with the scope from the challenge, and sends the metadata's
/// `resource` verbatim on the authorization request, the code exchange and the refresh.
#[tokio::test]
async fn chatgpt_sends_the_prm_resource_verbatim_with_the_challenge_scope() {
    let server = LiveServer::start(|_| {}).await;
    let challenge = probe(&server, "openai-mcp/1.0").await;
    let prm_url = challenge_param(&challenge, "resource_metadata").expect("resource_metadata");
    let scope = challenge_param(&challenge, "scope").expect("the challenge names a scope");

    let prm = server.get(&prm_url, &[]).await.expect(200).json();
    let resource = prm["resource"].as_str().unwrap().to_owned();
    assert_eq!(resource, server.mcp_url);
    let servers = prm["authorization_servers"].as_array().unwrap();
    assert!(!servers.is_empty());
    let mut metadata = None;
    for issuer in servers {
        let issuer = issuer.as_str().unwrap();
        let reply = server
            .get(
                &format!("{issuer}/.well-known/oauth-authorization-server"),
                &[],
            )
            .await;
        if reply.status.is_success() {
            let doc = reply.json();
            assert_eq!(doc["issuer"], issuer);
            metadata = Some(doc);
            break;
        }
    }
    let metadata = metadata.expect("one authorization server answers");
    let endpoint = |name: &str| metadata[name].as_str().unwrap().to_owned();

    let client = server
        .post_json(
            &endpoint("registration_endpoint"),
            &json!({
                "client_name": "ChatGPT",
                "redirect_uris": [CHATGPT_CALLBACK],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none"
            }),
            &[],
        )
        .await
        .expect(201)
        .json();
    let client_id = client["client_id"].as_str().unwrap();

    let (verifier, challenge) = pkce();
    let redirect = authorize(
        &server,
        &endpoint("authorization_endpoint"),
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", CHATGPT_CALLBACK),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "chatgpt-state"),
            ("scope", &scope),
            ("resource", &resource),
        ],
    )
    .await;
    assert!(
        redirect.as_str().starts_with(CHATGPT_CALLBACK),
        "{redirect}"
    );
    let code = query_param(&redirect, "code").unwrap();

    let tokens = server
        .post_form(
            &endpoint("token_endpoint"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", client_id),
                ("redirect_uri", CHATGPT_CALLBACK),
                ("resource", &resource),
            ],
            &[],
        )
        .await
        .expect(200)
        .json();
    assert_eq!(tokens["scope"], scope.as_str());
    let (access, refresh) = token_pair(&tokens);
    assert_eq!(
        server.whoami(&access, "2025-06-18").await["client_id"],
        client_id
    );

    let refreshed = server
        .post_form(
            &endpoint("token_endpoint"),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", client_id),
                ("resource", &resource),
            ],
            &[],
        )
        .await
        .expect(200)
        .json();
    let (access, _) = token_pair(&refreshed);
    assert_eq!(
        server.whoami(&access, "2025-06-18").await["client_id"],
        client_id
    );
}

/// The TypeScript SDK client: `MCP-Protocol-Version` on every discovery request, the issuer must
/// equal the PRM's `authorization_servers` entry byte for byte, `resource` from the PRM, scope
/// from the challenge (plus `offline_access` only if the server lists it), a registration without
/// `token_endpoint_auth_method` (RFC 7591 default), then client authentication with exactly the
/// method the registration response names, and `iss` checked on the redirect.
#[tokio::test]
async fn typescript_sdk_follows_the_registered_auth_method_and_checks_the_issuer() {
    const VERSION: &str = "2025-11-25";
    const REDIRECT: &str = "http://localhost:6274/oauth/callback";
    let server = LiveServer::start(|_| {}).await;
    let challenge = probe(&server, "node").await;
    let version_header = [("mcp-protocol-version", VERSION)];

    let prm_url = challenge_param(&challenge, "resource_metadata").unwrap();
    let prm = server
        .get(&prm_url, &version_header)
        .await
        .expect(200)
        .json();
    let issuer = prm["authorization_servers"][0].as_str().unwrap().to_owned();
    let resource = prm["resource"].as_str().unwrap().to_owned();
    let metadata = server
        .get(
            &format!("{issuer}/.well-known/oauth-authorization-server"),
            &version_header,
        )
        .await
        .expect(200)
        .json();
    assert_eq!(metadata["issuer"], issuer.as_str(), "IssuerMismatchError");
    assert!(
        metadata["code_challenge_methods_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "S256")
    );
    let mut scope = challenge_param(&challenge, "scope").unwrap();
    if metadata["scopes_supported"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s == "offline_access"))
    {
        scope.push_str(" offline_access");
    }

    let client = server
        .post_json(
            metadata["registration_endpoint"].as_str().unwrap(),
            &json!({
                "client_name": "MCP Inspector",
                "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "scope": scope
            }),
            &version_header,
        )
        .await
        .expect(201)
        .json();
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let method = client["token_endpoint_auth_method"].as_str().unwrap();
    assert!(
        metadata["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == method),
        "the registered method {method} is one the server advertises"
    );
    let secret = client["client_secret"].as_str().map(str::to_owned);
    // The SDK authenticates the way the registration response says.
    let authenticate = |form: &mut Vec<(&'static str, String)>| -> Vec<(String, String)> {
        match method {
            "client_secret_basic" => {
                use base64::Engine;
                let credentials = format!("{client_id}:{}", secret.as_deref().unwrap());
                vec![(
                    "authorization".to_owned(),
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(credentials)
                    ),
                )]
            }
            "client_secret_post" => {
                form.push(("client_id", client_id.clone()));
                form.push(("client_secret", secret.clone().unwrap()));
                Vec::new()
            }
            "none" => {
                form.push(("client_id", client_id.clone()));
                Vec::new()
            }
            other => panic!("unexpected method {other}"),
        }
    };

    let (verifier, challenge) = pkce();
    let redirect = authorize(
        &server,
        metadata["authorization_endpoint"].as_str().unwrap(),
        &[
            ("response_type", "code"),
            ("client_id", &client_id),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("redirect_uri", REDIRECT),
            ("state", "ts-state"),
            ("scope", &scope),
            ("resource", &resource),
        ],
    )
    .await;
    assert!(redirect.as_str().starts_with(REDIRECT), "{redirect}");
    assert_eq!(
        query_param(&redirect, "iss").as_deref(),
        Some(issuer.as_str())
    );
    let code = query_param(&redirect, "code").unwrap();

    let token_endpoint = metadata["token_endpoint"].as_str().unwrap();
    let mut form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("code_verifier", verifier),
        ("redirect_uri", REDIRECT.to_owned()),
        ("resource", resource.clone()),
    ];
    let headers = authenticate(&mut form);
    let tokens = post_token(&server, token_endpoint, &form, &headers, VERSION).await;
    let (access, refresh) = token_pair(&tokens);
    assert_eq!(
        server.whoami(&access, VERSION).await["client_id"],
        client_id
    );

    let mut form = vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", refresh),
        ("resource", resource.clone()),
    ];
    let headers = authenticate(&mut form);
    let refreshed = post_token(&server, token_endpoint, &form, &headers, VERSION).await;
    let (access, _) = token_pair(&refreshed);
    assert_eq!(
        server.whoami(&access, VERSION).await["client_id"],
        client_id
    );
}

async fn post_token(
    server: &LiveServer,
    endpoint: &str,
    form: &[(&str, String)],
    headers: &[(String, String)],
    version: &str,
) -> Value {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut all: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.push(("mcp-protocol-version", version));
    server
        .post_form(endpoint, &form, &all)
        .await
        .expect(200)
        .json()
}

/// VS Code (Copilot), falling back to registration: a native client whose registered loopback
/// redirect is the bare root `http://127.0.0.1:33418/`, coming back on whatever port it got.
#[tokio::test]
async fn vscode_registers_a_root_loopback_redirect_and_returns_on_another_port() {
    let server = LiveServer::start(|_| {}).await;
    probe(&server, "vscode").await;
    let client = server
        .post_json(
            &server.url("/register"),
            &json!({
                "client_name": "Visual Studio Code",
                "application_type": "native",
                "redirect_uris": ["http://127.0.0.1:33418/", "https://vscode.dev/redirect"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none"
            }),
            &[],
        )
        .await
        .expect(201)
        .json();
    let client_id = client["client_id"].as_str().unwrap();
    let redirect_uri = "http://127.0.0.1:50731/";

    let (verifier, challenge) = pkce();
    let redirect = authorize(
        &server,
        &server.url("/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "vscode-state"),
            ("scope", "mcp"),
            ("resource", &server.mcp_url),
        ],
    )
    .await;
    assert!(
        redirect.as_str().starts_with(&format!("{redirect_uri}?")),
        "{redirect}"
    );
    let code = query_param(&redirect, "code").unwrap();
    let tokens = server
        .post_form(
            &server.url("/token"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", client_id),
                ("redirect_uri", redirect_uri),
                ("resource", &server.mcp_url),
            ],
            &[],
        )
        .await
        .expect(200)
        .json();
    let (access, _) = token_pair(&tokens);
    assert_eq!(
        server.whoami(&access, "2025-06-18").await["client_id"],
        client_id
    );
}
