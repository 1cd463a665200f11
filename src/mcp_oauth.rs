//! [`McpOAuth`]: the assembled layer, and its builder.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;

mod configured_clients;

use crate::Error;
use crate::audit::{Audit, AuditCallback, AuditEvent};
use crate::clock::{Clock, ClockedClients, ClockedTokens, ManualClock};
use crate::config::{OAuthConfig, parse_server_url};
use crate::http::{AppState, BearerLayer, Limits};
use crate::oauth::assertion::KeySets;
use crate::oauth::client_metadata::MetadataDocuments;
use crate::oauth::{AuthServer, Resource, ScopePolicy, Settings, metadata};
use crate::passkey::{Passkeys, SetupToken};
use crate::paths;
use crate::store::{ClientStore, PasskeyStore, StoreError, TokenStore};
use crate::telemetry::{MeteredClients, MeteredTokens};

/// The OAuth layer, ready to wrap MCP routes.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use mcp_oauth::{McpOAuth, OAuthConfig};
///
/// let config = OAuthConfig::with_defaults(
///     "https://mcp.example.com", "claude", "a-long-random-secret", "Example", "data/passkeys.json",
/// );
/// let oauth = McpOAuth::builder(config).build()?;
/// if let Some(url) = oauth.setup_url().await? {
///     println!("register your passkey: {url}");
/// }
/// let mcp_routes = axum::Router::new(); // your MCP server, e.g. rmcp's StreamableHttpService at /mcp
/// let app = oauth.router(mcp_routes);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct McpOAuth {
    pub(crate) state: AppState,
    resource_path: String,
    scope_policy: Option<Arc<ScopePolicy>>,
}

/// Chooses the stores, then builds an [`McpOAuth`]. Without a choice, tokens and clients live in a
/// [`MemoryStore`](crate::backends::MemoryStore) and passkeys in a
/// [`PasskeyFileStore`](crate::backends::PasskeyFileStore) at `passkey_store_path`.
#[must_use]
pub struct McpOAuthBuilder {
    config: OAuthConfig,
    tokens: Option<Arc<dyn TokenStore>>,
    clients: Option<Arc<dyn ClientStore>>,
    passkeys: Option<Arc<dyn PasskeyStore>>,
    audit: Option<AuditCallback>,
    scope_policy: Option<ScopePolicy>,
    clock: Clock,
}

impl std::fmt::Debug for McpOAuthBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpOAuthBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl McpOAuth {
    /// Start building from a configuration.
    pub fn builder(config: OAuthConfig) -> McpOAuthBuilder {
        McpOAuthBuilder {
            config,
            tokens: None,
            clients: None,
            passkeys: None,
            audit: None,
            scope_policy: None,
            clock: Clock::System,
        }
    }

    /// The OAuth endpoints and pages, with `mcp_routes` (their fallback too, if they have one)
    /// behind the bearer guard (and the [scope policy](McpOAuthBuilder::scope_policy), if one was
    /// given) and every route behind the rate limits. Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so limits
    /// apply per client address.
    pub fn router(&self, mcp_routes: Router) -> Router {
        let guard = match &self.scope_policy {
            Some(policy) => self.bearer_layer().with_policy(Arc::clone(policy)),
            None => self.bearer_layer(),
        };
        crate::http::router(self.state.clone(), guard, mcp_routes, &self.resource_path)
    }

    /// The bearer guard alone, to protect further routes (optionally with
    /// [`BearerLayer::require_scopes`] or [`BearerLayer::scope_policy`]). It does not carry the
    /// builder's scope policy, which applies to the routes given to [`router`](McpOAuth::router).
    /// It spends the same per-address budget of refused requests
    /// ([`RateLimits::refused`](crate::RateLimits::refused)) as the MCP routes' guard.
    pub fn bearer_layer(&self) -> BearerLayer {
        BearerLayer::new(Arc::clone(&self.state.server), self.state.limits.clone())
    }

    /// The issuer: the configured server URL.
    pub fn issuer(&self) -> &str {
        self.state.server.issuer()
    }

    /// The protected resource: the server URL and the MCP path.
    pub fn resource(&self) -> &str {
        self.state.server.resource().as_str()
    }

    /// Purge expired records from the token and client stores every `period`, for backends without
    /// native expiry (SQLite). Reads never depend on it: expired records are invisible either way;
    /// this only reclaims space. Abort the returned task on shutdown.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, or with a zero `period`.
    pub fn spawn_expiry_sweeper(&self, period: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let server = Arc::clone(&self.state.server);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                for result in server.purge_expired().await {
                    match result {
                        Ok(0) => {}
                        Ok(purged) => {
                            tracing::debug!(target: "mcp_oauth::store", purged, "expired records purged")
                        }
                        Err(error) => crate::oauth::log_store_error(&error),
                    }
                }
            }
        })
    }

    /// The owner's operations: grants, clients, passkeys and the connection doctor, for an
    /// application's own admin surface (the console at `/oauth/console` uses the same).
    pub fn admin(&self) -> crate::console::Admin<'_> {
        crate::console::Admin::new(&self.state.server, &self.state.passkeys)
    }

    /// The page for registering a passkey, with the setup token in its fragment (which browsers do
    /// not send to the server), while a setup token is usable. `None` once it has been used.
    ///
    /// # Errors
    ///
    /// The passkey or token store failed.
    pub async fn setup_url(&self) -> Result<Option<String>, StoreError> {
        let token = self.state.passkeys.usable_setup_token().await?;
        Ok(token.map(|token| {
            format!(
                "{}{}#setup_token={token}",
                self.issuer(),
                paths::PASSKEY_REGISTER
            )
        }))
    }
}

impl McpOAuthBuilder {
    /// Use one backend for all three stores (for example a `SqliteStore`).
    pub fn stores<S>(self, store: S) -> Self
    where
        S: TokenStore + ClientStore + PasskeyStore + Clone,
    {
        self.token_store(Arc::new(store.clone()))
            .client_store(Arc::new(store.clone()))
            .passkey_store(Arc::new(store))
    }

    /// Use this token store.
    pub fn token_store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.tokens = Some(store);
        self
    }

    /// Use this client store.
    pub fn client_store(mut self, store: Arc<dyn ClientStore>) -> Self {
        self.clients = Some(store);
        self
    }

    /// Use this passkey store instead of the JSON file.
    pub fn passkey_store(mut self, store: Arc<dyn PasskeyStore>) -> Self {
        self.passkeys = Some(store);
        self
    }

    /// Also pass every [`AuditEvent`] to `callback` (they always go to `tracing` on the target
    /// `mcp_oauth::audit`). The callback runs inline on the request path: keep it quick, and hand
    /// slow work to a channel.
    pub fn on_audit(mut self, callback: impl Fn(&AuditEvent) + Send + Sync + 'static) -> Self {
        self.audit = Some(Arc::new(callback));
        self
    }

    /// Require scopes for particular MCP methods and tools on the MCP routes (step-up
    /// authorization): a token without them gets 403 `insufficient_scope` naming the scopes to
    /// authorize again for. Checked against [`OAuthConfig::scopes`] by [`build`](Self::build).
    pub fn scope_policy(mut self, policy: ScopePolicy) -> Self {
        self.scope_policy = Some(policy);
        self
    }

    /// Take the time from `clock` instead of the system clock, so that a test can move time
    /// forward and see codes, tokens, consent requests, registrations and console sessions expire
    /// without waiting. Whatever the stores' own clocks say, a record whose expiry has passed by
    /// this clock is treated as gone. Rate limits and the failure budget keep real time.
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Clock::Manual(clock);
        self
    }

    /// Validate the configuration, open the default stores, and assemble the layer.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming a bad field, or [`Error::Store`] if the passkey file cannot be
    /// read (a corrupt file is reported, never overwritten).
    pub fn build(self) -> Result<McpOAuth, Error> {
        let config = self.config;
        config.validate()?;
        if let Some(policy) = &self.scope_policy {
            policy
                .validate(&config.scopes)
                .map_err(|reason| Error::invalid("scope_policy", &reason))?;
        }
        let scope_policy = self
            .scope_policy
            .filter(|policy| !policy.is_empty())
            .map(Arc::new);
        let server_url = parse_server_url(&config.server_url)?;
        let (tokens, clients) = default_stores(self.tokens, self.clients)?;
        configured_clients::check_machine_room(&config, tokens.eviction_capacity())?;
        let clock = self.clock;
        // Every part of the core reads the stores through its clock, timed.
        let tokens: Arc<dyn TokenStore> = Arc::new(ClockedTokens::new(
            Arc::new(MeteredTokens::new(tokens)),
            clock.clone(),
        ));
        let clients: Arc<dyn ClientStore> = Arc::new(ClockedClients::new(
            Arc::new(MeteredClients::new(clients)),
            clock.clone(),
        ));
        let passkey_store = match self.passkeys {
            Some(store) => store,
            None => Arc::new(crate::backends::PasskeyFileStore::open(
                &config.passkey_store_path,
            )?),
        };

        let (metadata_documents, key_sets) = metadata_documents(&config, &server_url)?;
        let issuer = config.server_url.clone();
        let resource = Resource::new(&issuer, &config.resource_path)
            .map_err(|e| Error::invalid("resource_path", &e.to_string()))?;
        let settings = Settings {
            resource_metadata_url: format!(
                "{issuer}{}",
                paths::protected_resource_metadata(&config.resource_path)
            ),
            issuer: issuer.clone(),
            app_name: config.app_name.clone(),
            resource,
            scopes: config.scopes.clone(),
            default_scopes: config.default_scopes.clone(),
            scope_descriptions: config.scope_descriptions.clone(),
            token_lifetime_secs: config.token_lifetime_secs,
            code_lifetime_secs: config.code_lifetime_secs,
            refresh_token_lifetime_secs: config.refresh_token_lifetime_secs,
            refresh_grace_secs: config.refresh_grace_secs,
            consent_lifetime_secs: config.consent_lifetime_secs,
            dynamic_registration: config.dynamic_registration,
            introspection_clients: config.introspection_clients.clone(),
            client_id_metadata_documents: metadata_documents.is_some(),
            client_lifetime_secs: config.registered_client_lifetime_secs,
            max_unapproved_clients: config.max_unapproved_clients,
            unapproved_client_lifetime_secs: config.unapproved_client_lifetime_secs,
            native_redirect_uris: config.native_redirect_uris.clone(),
            pre_registered: configured_clients::pre_registered(&config, &server_url)?,
            machine_clients: configured_clients::machine_clients(&config, &server_url)?,
        };
        let authorization_server_metadata =
            Bytes::from(metadata::authorization_server(&settings).to_string());
        let protected_resource_metadata =
            Bytes::from(metadata::protected_resource(&settings).to_string());
        let setup = SetupToken::new(config.setup_token.as_deref());
        let audit = Audit::new(self.audit, clock.clone());
        let passkeys = Passkeys::new(
            &server_url,
            &config.app_name,
            passkey_store,
            Arc::clone(&tokens),
            setup,
            audit.clone(),
            clock.clone(),
        )?;
        let server = AuthServer::new(
            settings,
            audit,
            clock,
            tokens,
            clients,
            metadata_documents,
            key_sets,
        );
        let state = AppState {
            server: Arc::new(server),
            passkeys: Arc::new(passkeys),
            limits: Limits::new(
                &config.rate_limits,
                &config.trusted_proxies,
                &config.app_name,
            ),
            app_name: Arc::from(config.app_name.as_str()),
            origin: Arc::from(server_url.origin().ascii_serialization().as_str()),
            max_body_bytes: config.max_body_bytes,
            authorization_server_metadata,
            protected_resource_metadata,
        };
        let oauth = McpOAuth {
            resource_path: config.resource_path,
            scope_policy,
            state,
        };
        announce_setup_url(&oauth);
        Ok(oauth)
    }
}

/// The resolver for URL client ids and the fetcher of their keys.
type Resolvers = (Option<Arc<dyn MetadataDocuments>>, Option<Arc<dyn KeySets>>);

/// The resolver for URL client ids, when metadata documents are on, and the fetcher of the key
/// sets at their `jwks_uri` and at configured clients' (the same fetcher, under the same rules),
/// when either needs it.
#[cfg(feature = "cimd")]
fn metadata_documents(config: &OAuthConfig, server_url: &url::Url) -> Result<Resolvers, Error> {
    let key_uris = configured_clients::has_key_uri(config);
    if !config.client_id_metadata_documents && !key_uris {
        return Ok((None, None));
    }
    if config.cimd_allow_loopback_http_for_testing {
        tracing::warn!(
            target: "mcp_oauth::cimd",
            "cimd_allow_loopback_http_for_testing is on: client metadata documents and key sets are fetched from http loopback URLs; never use this outside tests"
        );
    }
    let documents = crate::cimd::Documents::new(
        config.native_redirect_uris.clone(),
        url_rules(config, server_url),
    )
    .map_err(|reason| Error::invalid("client_id_metadata_documents", &reason))?;
    let documents = Arc::new(documents);
    let resolver: Option<Arc<dyn MetadataDocuments>> = config
        .client_id_metadata_documents
        .then(|| documents.clone() as Arc<dyn MetadataDocuments>);
    Ok((resolver, Some(documents)))
}

/// The URL rules of every fetch: metadata documents and key sets alike.
#[cfg(feature = "cimd")]
fn url_rules(config: &OAuthConfig, server_url: &url::Url) -> crate::cimd::UrlRules {
    crate::cimd::UrlRules {
        allowed_ports: config.cimd_allowed_ports.clone(),
        own_host: server_url.host_str().unwrap_or_default().to_owned(),
        allow_loopback_http: config.cimd_allow_loopback_http_for_testing,
    }
}

/// Without the `cimd` feature, URL client ids are unknown clients.
#[cfg(not(feature = "cimd"))]
fn metadata_documents(_: &OAuthConfig, _: &url::Url) -> Result<Resolvers, Error> {
    Ok((None, None))
}

type TokenAndClientStores = (Arc<dyn TokenStore>, Arc<dyn ClientStore>);

#[cfg(feature = "memory")]
fn default_stores(
    tokens: Option<Arc<dyn TokenStore>>,
    clients: Option<Arc<dyn ClientStore>>,
) -> Result<TokenAndClientStores, Error> {
    let memory = crate::backends::MemoryStore::new();
    Ok((
        tokens.unwrap_or_else(|| Arc::new(memory.clone())),
        clients.unwrap_or_else(|| Arc::new(memory)),
    ))
}

#[cfg(not(feature = "memory"))]
fn default_stores(
    tokens: Option<Arc<dyn TokenStore>>,
    clients: Option<Arc<dyn ClientStore>>,
) -> Result<TokenAndClientStores, Error> {
    match (tokens, clients) {
        (Some(tokens), Some(clients)) => Ok((tokens, clients)),
        (None, _) => Err(Error::invalid(
            "token_store",
            "is required when the `memory` feature is off",
        )),
        (_, None) => Err(Error::invalid(
            "client_store",
            "is required when the `memory` feature is off",
        )),
    }
}

/// Say once, at start, how to register the first passkey. A generated setup token is logged (it
/// exists nowhere else, and the owner needs it); a configured one is not repeated.
fn announce_setup_url(oauth: &McpOAuth) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let oauth = oauth.clone();
    runtime.spawn(async move {
        match oauth.state.passkeys.any_registered().await {
            Ok(false) if oauth.state.passkeys.setup_token_is_generated() => {
                if let Ok(Some(url)) = oauth.setup_url().await {
                    tracing::warn!(target: "mcp_oauth", "no passkey is registered yet; register one at {url}");
                }
            }
            Ok(false) => {
                tracing::warn!(
                    target: "mcp_oauth",
                    "no passkey is registered yet; register one at {}{} with the configured setup token",
                    oauth.issuer(),
                    paths::PASSKEY_REGISTER
                );
            }
            Ok(true) => {}
            Err(error) => crate::oauth::log_store_error(&error),
        }
    });
}
