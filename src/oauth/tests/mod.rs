//! The stateful core on its own, without HTTP: an [`AuthServer`] over a `MemoryStore`, on a
//! [`ManualClock`] that each test moves instead of waiting. One file per part of the core.

mod authorize;
mod grants;
mod register;
mod token;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::budget::{Budget, Refused};
use super::{AuthServer, OAuthError};
use crate::config::OAuthConfig;
use crate::{ManualClock, McpOAuth, MemoryStore};

pub(crate) const REDIRECT: &str = "http://127.0.0.1:9999/callback";
pub(crate) const RESOURCE: &str = "http://localhost:8080/mcp";

/// An authorization server on a manual clock, and the store behind it.
pub(crate) struct Core {
    /// The whole layer, for what sits above the core (the owner's operations).
    pub(crate) oauth: McpOAuth,
    pub(crate) server: Arc<AuthServer>,
    pub(crate) clock: ManualClock,
    pub(crate) store: MemoryStore,
}

/// What a client holds after connecting.
pub(crate) struct Connected {
    pub(crate) client_id: String,
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
}

/// The test configuration, which `configure` may change.
pub(crate) fn config(configure: impl FnOnce(&mut OAuthConfig)) -> OAuthConfig {
    let mut config = OAuthConfig::with_defaults(
        "http://localhost:8080",
        "pre-registered",
        "pre-registered-secret-0123456789",
        "Core Test",
        "unused.json",
    );
    configure(&mut config);
    config
}

impl Core {
    /// A server with the default test configuration.
    pub(crate) fn new() -> Self {
        Self::with(config(|_| {}))
    }

    pub(crate) fn with(config: OAuthConfig) -> Self {
        let store = MemoryStore::new();
        let clock = ManualClock::new();
        let oauth = McpOAuth::builder(config)
            .stores(store.clone())
            .clock(clock.clone())
            .build()
            .expect("a valid test configuration");
        Self {
            server: Arc::clone(&oauth.state.server),
            oauth,
            clock,
            store,
        }
    }

    pub(crate) fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// Register a public client; returns its id.
    pub(crate) async fn register_public_client(&self) -> String {
        let body = json!({
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        });
        let registration = self
            .server
            .register(body.to_string().as_bytes())
            .await
            .expect("registration");
        json_of(&registration)["client_id"]
            .as_str()
            .expect("a client id")
            .to_owned()
    }

    /// Validate an authorization request with a fresh PKCE challenge and keep it pending;
    /// returns (request id, code verifier).
    pub(crate) async fn pending_request(&self, client_id: &str) -> (String, String) {
        let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let query = form(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "st"),
        ]);
        let consent = self
            .server
            .begin_authorization(query.as_bytes())
            .await
            .expect("a valid authorization request");
        (consent.request_id, verifier)
    }

    /// The owner approves; returns the code. (The proof of presence is the passkey assertion
    /// check's business; unit tests of the core are given one made for the request.)
    pub(crate) async fn approve(&self, request_id: &str) -> Result<String, OAuthError> {
        let approval = crate::presence::Approval::for_tests(request_id);
        let decision = self.server.approve(approval).await?;
        let url = url::Url::parse(decision.redirect_to.expose()).expect("a redirect URL");
        let code = url.query_pairs().find(|(name, _)| name == "code");
        Ok(code.expect("a code in the redirect").1.into_owned())
    }

    /// A code for a newly registered public client: (client id, code, verifier).
    pub(crate) async fn code(&self) -> (String, String, String) {
        let client_id = self.register_public_client().await;
        let (request_id, verifier) = self.pending_request(&client_id).await;
        let code = self.approve(&request_id).await.expect("approval");
        (client_id, code, verifier)
    }

    /// `grant_type=authorization_code` for a public client; the token response as JSON.
    pub(crate) async fn exchange(
        &self,
        client_id: &str,
        code: &str,
        verifier: &str,
    ) -> Result<Value, OAuthError> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", REDIRECT),
            ("resource", RESOURCE),
        ])
        .await
    }

    /// `grant_type=refresh_token` for a public client; the token response as JSON.
    pub(crate) async fn refresh(&self, client_id: &str, token: &str) -> Result<Value, OAuthError> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", token),
        ])
        .await
    }

    async fn token(&self, pairs: &[(&str, &str)]) -> Result<Value, OAuthError> {
        match self
            .server
            .token(form(pairs).as_bytes(), None, &Budget::unlimited())
            .await
        {
            Ok(response) => Ok(json_of(&response)),
            Err(Refused::Error(error)) => Err(error),
            Err(Refused::Limited(_)) => panic!("no budget applies in these tests"),
        }
    }

    /// Register, authorize, approve and exchange.
    pub(crate) async fn connect(&self) -> Connected {
        let (client_id, code, verifier) = self.code().await;
        let tokens = self
            .exchange(&client_id, &code, &verifier)
            .await
            .expect("exchange");
        Connected {
            client_id,
            access_token: string(&tokens, "access_token"),
            refresh_token: string(&tokens, "refresh_token"),
        }
    }

    /// Whether the bearer guard lets `access_token` through.
    pub(crate) async fn accepts(&self, access_token: &str) -> bool {
        let header = format!("Bearer {access_token}");
        self.server.check_bearer(header.as_bytes()).await.is_ok()
    }
}

pub(crate) fn json_of(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("serialisable")
}

pub(crate) fn string(json: &Value, field: &str) -> String {
    json[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {json}"))
        .to_owned()
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    serializer.extend_pairs(pairs);
    serializer.finish()
}

/// That `result` is the OAuth error `code` with exactly `description`.
#[track_caller]
pub(crate) fn assert_error<T: std::fmt::Debug>(
    result: Result<T, OAuthError>,
    code: &str,
    description: &str,
) {
    match result {
        Err(error) => {
            assert_eq!(error.code.as_str(), code, "{error}");
            assert_eq!(error.description, description, "{error}");
        }
        Ok(value) => panic!("expected {code}, got {value:?}"),
    }
}
