//! [`OAuthConfig`]: everything the layer needs to know, with validation that names the bad field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ipnet::IpNet;
use url::Url;

use crate::Error;

mod client_keys;
mod machine_client;

pub use machine_client::MachineClient;

/// The default refresh-token lifetime: 30 days of inactivity.
pub const DEFAULT_REFRESH_TOKEN_LIFETIME_SECS: u64 = 30 * 24 * 3600;

/// Redirect URIs of Claude.ai's hosted connector (and Claude Code's loopback callbacks), accepted for
/// the pre-registered client by default.
pub const DEFAULT_CLIENT_REDIRECT_URIS: &[&str] = &[
    "https://claude.ai/api/mcp/auth_callback",
    "https://claude.com/api/mcp/auth_callback",
    "http://localhost/callback",
    "http://127.0.0.1/callback",
];

/// How the consent page describes the default `mcp` scope.
pub const DEFAULT_MCP_SCOPE_DESCRIPTION: &str = "Use this MCP server's tools and resources";

/// The longest scope description, in characters: the consent page is read on phones too.
const MAX_SCOPE_DESCRIPTION_CHARS: usize = 200;

/// One day, in seconds.
const DAY_SECS: u64 = 24 * 3600;
/// One year, in seconds.
const YEAR_SECS: u64 = 365 * DAY_SECS;

/// The longest access token: a year. Access tokens cannot be taken back from a resource server that
/// caches them; a day is usual.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = YEAR_SECS;
/// The longest authorization code: 10 minutes (OAuth 2.1 §4.1.2).
pub const MAX_CODE_LIFETIME_SECS: u64 = 600;
/// The longest refresh token, and the longest a registered client lives: ten years, far past any
/// real deployment.
pub const MAX_LONG_LIFETIME_SECS: u64 = 10 * YEAR_SECS;
/// The longest refresh grace: an hour. Retries and refreshes from several nodes come within
/// seconds, and every second of grace is one in which a stolen refresh token still works.
pub const MAX_REFRESH_GRACE_SECS: u64 = 3600;
/// The longest consent page, unapproved registration and failure window: a day. Each is a wait a
/// person sits through, or a hold on an address; past a day it is a typo, not a policy.
pub const MAX_SHORT_LIFETIME_SECS: u64 = DAY_SECS;
/// The most requests per minute, and the largest burst, of a rate-limit tier. The time a bucket
/// takes to refill (`burst` cells of `60 / per_minute` seconds, in nanoseconds) stays far from
/// overflowing; to lift the limits, turn them off with `enabled: false`.
pub const MAX_RATE_LIMIT: u32 = 1_000_000;

/// Redirect URIs with a private-use scheme that real MCP clients use, accepted by exact match only.
pub const DEFAULT_NATIVE_REDIRECT_URIS: &[&str] = &["cursor://anysphere.cursor-mcp/oauth/callback"];

/// Configuration of the OAuth layer.
///
/// The first fields are required; [`OAuthConfig::with_defaults`] fills in the rest. Every field is
/// checked by [`OAuthConfig::validate`] when the layer is built, and a bad value is an
/// [`Error::InvalidConfig`] naming the field.
///
/// Its `Debug` output shows every field but the secrets (`client_secret`, `setup_token`, each machine client's `secret`), which
/// print as `[redacted]`.
#[derive(Clone)]
#[non_exhaustive]
pub struct OAuthConfig {
    /// Public URL of the server, e.g. `https://mcp.example.com`: the OAuth issuer and the WebAuthn
    /// origin. No trailing slash, no path. `http` is accepted only for loopback hosts.
    pub server_url: String,
    /// The pre-registered confidential client's id (what Claude.ai's "advanced settings" send).
    pub client_id: String,
    /// The pre-registered client's secret. At least 16 characters; or empty, only when the client
    /// has keys ([`client_jwks`](OAuthConfig::client_jwks) or
    /// [`client_jwks_uri`](OAuthConfig::client_jwks_uri)): it then has no secret and must sign
    /// every request (`private_key_jwt`). An empty secret without keys is refused.
    pub client_secret: String,
    /// Redirect URIs the pre-registered client may use (loopback ones on any port).
    pub client_redirect_uris: Vec<String>,
    /// How the consent page names the pre-registered client.
    pub client_name: String,
    /// The pre-registered client's public keys, a JWK set as JSON text: with them it may also
    /// authenticate with a signed client assertion (`private_key_jwt`, RFC 7523) instead of its
    /// secret. Public keys only: a set holding a private or symmetric key is refused. `None` (the
    /// default): its secret only.
    pub client_jwks: Option<String>,
    /// Where the pre-registered client publishes its public keys (`jwks_uri`), instead of
    /// [`client_jwks`](OAuthConfig::client_jwks) (not both: RFC 7591 §2). Fetched and cached like a
    /// metadata document's key set, under the same URL rules: `https`, a public host other than
    /// this server's, a port in [`cimd_allowed_ports`](OAuthConfig::cimd_allowed_ports) (or `http`
    /// on loopback under
    /// [`cimd_allow_loopback_http_for_testing`](OAuthConfig::cimd_allow_loopback_http_for_testing));
    /// an assertion naming a key the cached set lacks earns one refetch a minute, and a set that
    /// cannot be fetched answers 503. Needs the `cimd` cargo feature. The URL is checked when the
    /// layer is built. `None` (the default): no keys there.
    pub client_jwks_uri: Option<String>,
    /// The machine clients: programs that get tokens for themselves with `client_credentials`,
    /// each with the scopes it may have. Empty (the default): the grant is not offered.
    pub machine_clients: Vec<MachineClient>,
    /// The name shown on the pages.
    pub app_name: String,
    /// The JSON file holding the owner's passkeys.
    pub passkey_store_path: PathBuf,
    /// One-time token for registering a passkey. `None`: one is generated at start while no passkey
    /// exists. A configured token can be used once, ever.
    pub setup_token: Option<String>,
    /// Access token lifetime. At most [`MAX_TOKEN_LIFETIME_SECS`] (a year).
    pub token_lifetime_secs: u64,
    /// Authorization code lifetime. At most [`MAX_CODE_LIFETIME_SECS`] (10 minutes).
    pub code_lifetime_secs: u64,
    /// Refresh token lifetime; each rotation starts it again. At most [`MAX_LONG_LIFETIME_SECS`]
    /// (ten years).
    pub refresh_token_lifetime_secs: u64,
    /// How long a just-rotated refresh token may be presented again without revoking the grant, for
    /// clients that refresh from several nodes at once or retry a lost response. Each such retry gets
    /// a fresh working pair. `0`: strict, any reuse revokes the grant. At most
    /// [`MAX_REFRESH_GRACE_SECS`] (an hour).
    pub refresh_grace_secs: u64,
    /// How long the consent page stays valid. At most [`MAX_SHORT_LIFETIME_SECS`] (a day).
    pub consent_lifetime_secs: u64,
    /// Path of the protected MCP endpoint, e.g. `/mcp`. The OAuth resource is
    /// `{server_url}{resource_path}`.
    pub resource_path: String,
    /// Scopes the server grants. Requests for other scopes are ignored, not refused.
    pub scopes: Vec<String>,
    /// Scopes granted when a request names none of [`scopes`](OAuthConfig::scopes). Must be a subset.
    pub default_scopes: Vec<String>,
    /// What each scope lets an application do, in plain words, shown on the consent page next to
    /// the scope's code. Only for scopes in [`scopes`](OAuthConfig::scopes); a scope without one
    /// shows its code alone. Default: `mcp` → "Use this MCP server's tools and resources".
    pub scope_descriptions: BTreeMap<String, String>,
    /// The clients that may call `POST /introspect` (RFC 7662): the resource servers, each
    /// authenticating with its client secret. Any other client gets 401 `invalid_client`, so a
    /// client that registered itself cannot learn about other clients' tokens. Default: the
    /// pre-registered client alone. Empty: introspection is off, and the metadata does not
    /// advertise it.
    pub introspection_clients: Vec<String>,
    /// Whether `POST /register` (RFC 7591 dynamic client registration) is offered.
    pub dynamic_registration: bool,
    /// How long a dynamically registered client lives once the owner has approved it (counted
    /// from the latest approval). `None`: forever. At most [`MAX_LONG_LIFETIME_SECS`] (ten years).
    pub registered_client_lifetime_secs: Option<u64>,
    /// How many dynamically registered clients may await the owner's first approval at once,
    /// across every instance sharing the client store. Past it, `POST /register` answers `503`
    /// with `Retry-After` until one is approved, lapses or is removed; nothing is evicted, so a
    /// flood of registrations never pushes out a client the owner approved.
    pub max_unapproved_clients: u64,
    /// How long a registration lives until the owner first approves the client. Clients register
    /// just before they send the owner to the consent page, so an hour is plenty; keep it longer
    /// than [`consent_lifetime_secs`](OAuthConfig::consent_lifetime_secs). At most
    /// [`MAX_SHORT_LIFETIME_SECS`] (a day).
    pub unapproved_client_lifetime_secs: u64,
    /// Whether a `client_id` that is an `https` URL is resolved through its Client ID Metadata
    /// Document (how Claude, Claude Code, VS Code and ChatGPT identify themselves without
    /// registering). Needs the `cimd` cargo feature (on by default); without it, or when this is
    /// `false`, URL client ids are unknown clients and the metadata does not advertise support.
    pub client_id_metadata_documents: bool,
    /// **Dangerous, for tests only.** Also fetch metadata documents from
    /// `http://127.0.0.1:PORT/…`, `http://[::1]:PORT/…` and `http://localhost:PORT/…`, so tests can
    /// serve them from a local server. It opens the loopback interface to anyone who can send an
    /// authorization request, so it is refused unless `server_url` is itself a localhost URL. The
    /// ports are still only those in [`cimd_allowed_ports`](OAuthConfig::cimd_allowed_ports).
    pub cimd_allow_loopback_http_for_testing: bool,
    /// The ports a metadata document URL may name. Default: 443 alone, so that a `client_id`
    /// cannot point the fetcher at the other services of a public host (SSH, mail, admin panels
    /// that trust this server's address); a URL naming another port is refused before any
    /// connection. Add a port only for a client you know serves its document there.
    pub cimd_allowed_ports: Vec<u16>,
    /// Non-`https`, non-loopback redirect URIs that clients may register, matched exactly (for example
    /// Cursor's private-use scheme).
    pub native_redirect_uris: Vec<String>,
    /// Per-IP rate limits.
    pub rate_limits: RateLimits,
    /// Reverse proxies whose `X-Forwarded-For` is believed. Empty: the peer address is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Largest accepted request body on the OAuth endpoints, in bytes.
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured in full, so that a new field does not compile until someone decides
        // whether it is secret.
        let Self {
            server_url,
            client_id,
            client_secret: _,
            client_redirect_uris,
            client_name,
            client_jwks,
            client_jwks_uri,
            machine_clients,
            app_name,
            passkey_store_path,
            setup_token,
            token_lifetime_secs,
            code_lifetime_secs,
            refresh_token_lifetime_secs,
            refresh_grace_secs,
            consent_lifetime_secs,
            resource_path,
            scopes,
            default_scopes,
            scope_descriptions,
            introspection_clients,
            dynamic_registration,
            registered_client_lifetime_secs,
            max_unapproved_clients,
            unapproved_client_lifetime_secs,
            client_id_metadata_documents,
            cimd_allow_loopback_http_for_testing,
            cimd_allowed_ports,
            native_redirect_uris,
            rate_limits,
            trusted_proxies,
            max_body_bytes,
        } = self;
        f.debug_struct("OAuthConfig")
            .field("server_url", server_url)
            .field("client_id", client_id)
            .field("client_secret", &Redacted)
            .field("client_redirect_uris", client_redirect_uris)
            .field("client_name", client_name)
            .field("client_jwks", client_jwks)
            .field("client_jwks_uri", client_jwks_uri)
            .field("machine_clients", machine_clients)
            .field("app_name", app_name)
            .field("passkey_store_path", passkey_store_path)
            .field("setup_token", &setup_token.as_ref().map(|_| Redacted))
            .field("token_lifetime_secs", token_lifetime_secs)
            .field("code_lifetime_secs", code_lifetime_secs)
            .field("refresh_token_lifetime_secs", refresh_token_lifetime_secs)
            .field("refresh_grace_secs", refresh_grace_secs)
            .field("consent_lifetime_secs", consent_lifetime_secs)
            .field("resource_path", resource_path)
            .field("scopes", scopes)
            .field("default_scopes", default_scopes)
            .field("scope_descriptions", scope_descriptions)
            .field("introspection_clients", introspection_clients)
            .field("dynamic_registration", dynamic_registration)
            .field(
                "registered_client_lifetime_secs",
                registered_client_lifetime_secs,
            )
            .field("max_unapproved_clients", max_unapproved_clients)
            .field(
                "unapproved_client_lifetime_secs",
                unapproved_client_lifetime_secs,
            )
            .field("client_id_metadata_documents", client_id_metadata_documents)
            .field(
                "cimd_allow_loopback_http_for_testing",
                cimd_allow_loopback_http_for_testing,
            )
            .field("cimd_allowed_ports", cimd_allowed_ports)
            .field("native_redirect_uris", native_redirect_uris)
            .field("rate_limits", rate_limits)
            .field("trusted_proxies", trusted_proxies)
            .field("max_body_bytes", max_body_bytes)
            .finish()
    }
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::rules::secret::REDACTED)
    }
}

/// Rate limits: three per-IP tiers over the OAuth endpoints and pages, a per-grant
/// limit on the MCP routes (many users can share one client's egress address), a per-IP limit on
/// the requests the bearer guard refuses, and a per-IP budget of failed credential checks against
/// guessing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimits {
    /// Off switch, for load tests. Defaults to on.
    pub enabled: bool,
    /// Per IP: `/authorize*`, `/token`, `/revoke`, `/introspect`, and the starts of the console's
    /// passkey ceremonies (sign-in, adding a passkey).
    pub auth: RateLimit,
    /// Per IP: `/register`, `/passkey/register*`.
    pub registration: RateLimit,
    /// Per IP: every other OAuth route and page.
    pub general: RateLimit,
    /// Per grant (one approval by the owner): the MCP routes.
    pub mcp: RateLimit,
    /// Per IP: requests the bearer guard refuses (no token, an invalid one, too few scopes), each
    /// of which costs a store read. Past it, every request the guard sees from that address gets
    /// 429 before its token is looked up, until the limit refills. Valid tokens spend nothing.
    pub refused: RateLimit,
    /// Per IP and per thing guessed: failed client authentication at `/token`, `/revoke`,
    /// `/introspect` (per client id; ids naming no client share one budget), refused setup tokens,
    /// and refused owner's passkey assertions (console sign-in, approving a new passkey). Past a
    /// budget, checks of that credential from that address answer 429 until the window ends, so a
    /// secret cannot be guessed at request speed, while other clients and the owner behind the same
    /// address are unaffected.
    pub failures: FailureLimit,
}

/// A budget of failures per client IP and thing guessed, within a fixed window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureLimit {
    /// Failures allowed within a window.
    pub max_failures: u32,
    /// The window, in seconds. At most [`MAX_SHORT_LIFETIME_SECS`] (a day).
    pub window_secs: u64,
}

/// One tier: a token bucket per client IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per minute. At most [`MAX_RATE_LIMIT`].
    pub per_minute: u32,
    /// Requests allowed at once before the sustained rate applies. At most [`MAX_RATE_LIMIT`].
    pub burst: u32,
}

impl RateLimit {
    /// A tier allowing `per_minute` sustained with bursts of `burst`.
    pub const fn new(per_minute: u32, burst: u32) -> Self {
        Self { per_minute, burst }
    }
}

impl Default for RateLimits {
    /// Generous enough for a person connecting several clients in a minute, or an automated run of
    /// whole flows; tight enough that guessing a secret is hopeless.
    fn default() -> Self {
        Self {
            enabled: true,
            auth: RateLimit::new(120, 60),
            registration: RateLimit::new(20, 20),
            general: RateLimit::new(1200, 300),
            mcp: RateLimit::new(1200, 300),
            refused: RateLimit::new(120, 120),
            failures: FailureLimit {
                max_failures: 20,
                window_secs: 600,
            },
        }
    }
}

impl OAuthConfig {
    /// A configuration with every optional field at its default.
    pub fn with_defaults(
        server_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        app_name: impl Into<String>,
        passkey_store_path: impl Into<PathBuf>,
    ) -> Self {
        let client_id = client_id.into();
        Self {
            server_url: server_url.into(),
            introspection_clients: vec![client_id.clone()],
            client_id,
            client_secret: client_secret.into(),
            client_redirect_uris: strings(DEFAULT_CLIENT_REDIRECT_URIS),
            client_name: "Pre-registered client".to_owned(),
            client_jwks: None,
            client_jwks_uri: None,
            machine_clients: Vec::new(),
            app_name: app_name.into(),
            passkey_store_path: passkey_store_path.into(),
            setup_token: None,
            token_lifetime_secs: 86_400,
            code_lifetime_secs: 300,
            refresh_token_lifetime_secs: DEFAULT_REFRESH_TOKEN_LIFETIME_SECS,
            refresh_grace_secs: 60,
            consent_lifetime_secs: 600,
            resource_path: "/mcp".to_owned(),
            scopes: vec!["mcp".to_owned()],
            default_scopes: vec!["mcp".to_owned()],
            scope_descriptions: BTreeMap::from([(
                "mcp".to_owned(),
                DEFAULT_MCP_SCOPE_DESCRIPTION.to_owned(),
            )]),
            dynamic_registration: true,
            registered_client_lifetime_secs: Some(90 * 24 * 3600),
            max_unapproved_clients: 1_000,
            unapproved_client_lifetime_secs: 3600,
            client_id_metadata_documents: true,
            cimd_allow_loopback_http_for_testing: false,
            cimd_allowed_ports: vec![443],
            native_redirect_uris: strings(DEFAULT_NATIVE_REDIRECT_URIS),
            rate_limits: RateLimits::default(),
            trusted_proxies: Vec::new(),
            max_body_bytes: 64 * 1024,
        }
    }

    /// Check every field. Called by the builder; public so applications can check early.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first bad field and why.
    pub fn validate(&self) -> Result<(), Error> {
        let server_url = parse_server_url(&self.server_url)?;
        let bad = |field: &'static str, reason: &str| Err(Error::invalid(field, reason));
        if self.client_id.trim().is_empty() {
            return bad("client_id", "must not be empty");
        }
        if self.client_id.chars().any(|c| c.is_control() || c == ' ') {
            return bad("client_id", "must not contain spaces or control characters");
        }
        client_keys::validate_pre_registered(self)?;
        for uri in &self.client_redirect_uris {
            crate::rules::redirect_uri::validate_registrable(uri, &self.native_redirect_uris)
                .map_err(|reason| Error::invalid("client_redirect_uris", &reason))?;
        }
        if self.client_name.trim().is_empty() {
            return bad("client_name", "must not be empty");
        }
        if self.app_name.trim().is_empty() {
            return bad("app_name", "must not be empty");
        }
        if self.passkey_store_path.as_os_str().is_empty() {
            return bad("passkey_store_path", "must not be empty");
        }
        if let Some(token) = &self.setup_token
            && token.chars().count() < 16
        {
            return bad("setup_token", "must be at least 16 characters");
        }
        for (field, value) in [
            ("token_lifetime_secs", self.token_lifetime_secs),
            ("code_lifetime_secs", self.code_lifetime_secs),
            (
                "refresh_token_lifetime_secs",
                self.refresh_token_lifetime_secs,
            ),
            ("consent_lifetime_secs", self.consent_lifetime_secs),
            ("max_unapproved_clients", self.max_unapproved_clients),
            (
                "unapproved_client_lifetime_secs",
                self.unapproved_client_lifetime_secs,
            ),
        ] {
            if value == 0 {
                return bad(field, "must be greater than zero");
            }
        }
        for duration in self.durations() {
            if let Some(secs) = duration.secs
                && secs > duration.max
            {
                return bad(
                    duration.field,
                    &format!(
                        "must be at most {} seconds ({})",
                        duration.max, duration.why
                    ),
                );
            }
        }
        if self.refresh_grace_secs >= self.refresh_token_lifetime_secs {
            return bad(
                "refresh_grace_secs",
                "must be shorter than refresh_token_lifetime_secs",
            );
        }
        if !self.resource_path.starts_with('/')
            || self.resource_path.len() < 2
            || self.resource_path.ends_with('/')
            || self.resource_path.contains(['?', '#', ' '])
        {
            return bad(
                "resource_path",
                "must be a path like \"/mcp\": leading slash, no trailing slash, no query",
            );
        }
        if self.scopes.is_empty() {
            return bad("scopes", "must name at least one scope");
        }
        if let Some(scope) = self.scopes.iter().find(|s| !is_scope_token(s)) {
            return bad(
                "scopes",
                &format!(
                    "{scope:?} is not a valid scope (printable ASCII, no spaces, quotes or backslashes)"
                ),
            );
        }
        if self.default_scopes.is_empty() {
            return bad("default_scopes", "must name at least one scope");
        }
        if let Some(scope) = self
            .default_scopes
            .iter()
            .find(|s| !self.scopes.contains(s))
        {
            return bad("default_scopes", &format!("{scope:?} is not in scopes"));
        }
        for (scope, description) in &self.scope_descriptions {
            if !self.scopes.contains(scope) {
                return bad(
                    "scope_descriptions",
                    &format!("describes {scope:?}, which is not in scopes"),
                );
            }
            if description.trim().is_empty()
                || description.chars().count() > MAX_SCOPE_DESCRIPTION_CHARS
                || description.chars().any(char::is_control)
            {
                return bad(
                    "scope_descriptions",
                    &format!(
                        "the description of {scope:?} must be 1 to {MAX_SCOPE_DESCRIPTION_CHARS} characters, without control characters"
                    ),
                );
            }
        }
        if let Some(id) = self
            .introspection_clients
            .iter()
            .find(|id| id.trim().is_empty() || id.chars().any(|c| c.is_control() || c == ' '))
        {
            return bad(
                "introspection_clients",
                &format!("{id:?} is not a client id (empty, or with spaces or control characters)"),
            );
        }
        if self.registered_client_lifetime_secs == Some(0) {
            return bad(
                "registered_client_lifetime_secs",
                "must be greater than zero, or None",
            );
        }
        for uri in &self.native_redirect_uris {
            let parsed = Url::parse(uri).map_err(|e| {
                Error::invalid(
                    "native_redirect_uris",
                    &format!("{uri:?} is not a URL: {e}"),
                )
            })?;
            if matches!(
                parsed.scheme(),
                "http" | "https" | "javascript" | "data" | "file" | "blob"
            ) {
                return bad(
                    "native_redirect_uris",
                    &format!("{uri:?}: only private-use schemes belong here"),
                );
            }
        }
        for (field, tier) in [
            ("rate_limits.auth", self.rate_limits.auth),
            ("rate_limits.registration", self.rate_limits.registration),
            ("rate_limits.general", self.rate_limits.general),
            ("rate_limits.mcp", self.rate_limits.mcp),
            ("rate_limits.refused", self.rate_limits.refused),
        ] {
            if tier.per_minute == 0 || tier.burst == 0 {
                return bad(field, "per_minute and burst must be greater than zero");
            }
            if tier.per_minute > MAX_RATE_LIMIT || tier.burst > MAX_RATE_LIMIT {
                return bad(
                    field,
                    &format!(
                        "per_minute and burst must be at most {MAX_RATE_LIMIT}; to lift the limits, set rate_limits.enabled to false"
                    ),
                );
            }
        }
        if self.cimd_allow_loopback_http_for_testing
            && !crate::rules::redirect_uri::is_loopback_host(&server_url)
        {
            return bad(
                "cimd_allow_loopback_http_for_testing",
                "is for tests only, and allowed only when server_url is a localhost URL",
            );
        }
        if self.cimd_allowed_ports.is_empty() || self.cimd_allowed_ports.contains(&0) {
            return bad(
                "cimd_allowed_ports",
                "must list at least one port, none of them 0 (the default is [443])",
            );
        }
        let failures = self.rate_limits.failures;
        if failures.max_failures == 0 || failures.window_secs == 0 {
            return bad(
                "rate_limits.failures",
                "max_failures and window_secs must be greater than zero",
            );
        }
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes", "must be at least 1024");
        }
        machine_client::validate(self)
    }
}

/// One duration of the configuration, in seconds, and its upper bound.
struct DurationField {
    field: &'static str,
    /// `None`: not set (forever, where the field allows it).
    secs: Option<u64>,
    max: u64,
    /// Why the bound, for the error.
    why: &'static str,
}

impl OAuthConfig {
    /// Every duration in the configuration, with its bound: nothing added to a clock reading can
    /// then overflow. Destructured in full, like `Debug`, so that a new field does not compile until
    /// someone decides whether it is a duration.
    fn durations(&self) -> [DurationField; 8] {
        let Self {
            server_url: _,
            client_id: _,
            client_secret: _,
            client_redirect_uris: _,
            client_name: _,
            client_jwks: _,
            client_jwks_uri: _,
            machine_clients: _,
            app_name: _,
            passkey_store_path: _,
            setup_token: _,
            token_lifetime_secs,
            code_lifetime_secs,
            refresh_token_lifetime_secs,
            refresh_grace_secs,
            consent_lifetime_secs,
            resource_path: _,
            scopes: _,
            default_scopes: _,
            scope_descriptions: _,
            introspection_clients: _,
            dynamic_registration: _,
            registered_client_lifetime_secs,
            max_unapproved_clients: _,
            unapproved_client_lifetime_secs,
            client_id_metadata_documents: _,
            cimd_allow_loopback_http_for_testing: _,
            cimd_allowed_ports: _,
            native_redirect_uris: _,
            rate_limits:
                RateLimits {
                    enabled: _,
                    auth: _,
                    registration: _,
                    general: _,
                    mcp: _,
                    refused: _,
                    failures:
                        FailureLimit {
                            max_failures: _,
                            window_secs,
                        },
                },
            trusted_proxies: _,
            max_body_bytes: _,
        } = self;
        let field = |field, secs: u64, max, why| DurationField {
            field,
            secs: Some(secs),
            max,
            why,
        };
        [
            field(
                "token_lifetime_secs",
                *token_lifetime_secs,
                MAX_TOKEN_LIFETIME_SECS,
                "a year",
            ),
            field(
                "code_lifetime_secs",
                *code_lifetime_secs,
                MAX_CODE_LIFETIME_SECS,
                "OAuth 2.1 §4.1.2",
            ),
            field(
                "refresh_token_lifetime_secs",
                *refresh_token_lifetime_secs,
                MAX_LONG_LIFETIME_SECS,
                "ten years",
            ),
            field(
                "refresh_grace_secs",
                *refresh_grace_secs,
                MAX_REFRESH_GRACE_SECS,
                "an hour: a longer grace is a longer life for a stolen refresh token",
            ),
            field(
                "consent_lifetime_secs",
                *consent_lifetime_secs,
                MAX_SHORT_LIFETIME_SECS,
                "a day",
            ),
            DurationField {
                field: "registered_client_lifetime_secs",
                secs: *registered_client_lifetime_secs,
                max: MAX_LONG_LIFETIME_SECS,
                why: "ten years; None for forever",
            },
            field(
                "unapproved_client_lifetime_secs",
                *unapproved_client_lifetime_secs,
                MAX_SHORT_LIFETIME_SECS,
                "a day",
            ),
            field(
                "rate_limits.failures.window_secs",
                *window_secs,
                MAX_SHORT_LIFETIME_SECS,
                "a day",
            ),
        ]
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|&value| value.to_owned()).collect()
}

/// Parse and check `server_url`: absolute http(s), no path, query, fragment or credentials, http only
/// on loopback, and a host name (WebAuthn cannot use an IP address as relying party).
pub(crate) fn parse_server_url(server_url: &str) -> Result<Url, Error> {
    let field = "server_url";
    let url = Url::parse(server_url)
        .map_err(|e| Error::invalid(field, &format!("not an absolute URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if crate::rules::redirect_uri::is_loopback_host(&url) => {}
        "http" => {
            return Err(Error::invalid(
                field,
                "http is allowed only for localhost; use https",
            ));
        }
        _ => return Err(Error::invalid(field, "must be an http(s) URL")),
    }
    if server_url.ends_with('/') {
        return Err(Error::invalid(field, "must not end with a slash"));
    }
    if url.path() != "/" {
        return Err(Error::invalid(
            field,
            "must have no path: the OAuth endpoints live at the origin root",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(field, "must have no query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(field, "must not contain credentials"));
    }
    if url.domain().is_none() {
        return Err(Error::invalid(
            field,
            "must use a host name, not an IP address (a passkey relying party cannot be an IP); \
             for local use try http://localhost:PORT",
        ));
    }
    if url.as_str().trim_end_matches('/') != server_url {
        return Err(Error::invalid(
            field,
            &format!(
                "must be written in canonical form: {:?}",
                url.as_str().trim_end_matches('/')
            ),
        ));
    }
    Ok(url)
}

/// RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OAuthConfig {
        OAuthConfig::with_defaults(
            "https://mcp.example.com",
            "claude",
            "a-long-enough-secret",
            "Example",
            "/tmp/passkeys.json",
        )
    }

    fn field_of(config: &OAuthConfig) -> &'static str {
        match config.validate() {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        config().validate().unwrap();
        assert_eq!(config().introspection_clients, ["claude"]);
        let mut local = config();
        local.server_url = "http://localhost:8080".into();
        local.validate().unwrap();
        local.cimd_allow_loopback_http_for_testing = true;
        local.validate().unwrap();
    }

    #[test]
    fn bad_server_urls_name_the_field() {
        for url in [
            "mcp.example.com",
            "ftp://mcp.example.com",
            "http://mcp.example.com",
            "https://mcp.example.com/",
            "https://mcp.example.com/base",
            "https://mcp.example.com?x=1",
            "https://user:pw@mcp.example.com",
            "http://127.0.0.1:8080",
            "https://MCP.example.com",
        ] {
            let mut c = config();
            c.server_url = url.into();
            assert_eq!(field_of(&c), "server_url", "{url}");
        }
    }

    #[test]
    fn other_bad_fields_are_named() {
        type Mutation = Box<dyn Fn(&mut OAuthConfig)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "client_secret",
                Box::new(|c| c.client_secret = String::new()),
            ),
            (
                "client_secret",
                Box::new(|c| c.client_secret = "short".into()),
            ),
            ("client_id", Box::new(|c| c.client_id = " ".into())),
            ("app_name", Box::new(|c| c.app_name = String::new())),
            (
                "max_unapproved_clients",
                Box::new(|c| c.max_unapproved_clients = 0),
            ),
            (
                "unapproved_client_lifetime_secs",
                Box::new(|c| c.unapproved_client_lifetime_secs = 0),
            ),
            (
                "setup_token",
                Box::new(|c| c.setup_token = Some("weak".into())),
            ),
            (
                "resource_path",
                Box::new(|c| c.resource_path = "mcp".into()),
            ),
            (
                "resource_path",
                Box::new(|c| c.resource_path = "/mcp/".into()),
            ),
            ("scopes", Box::new(|c| c.scopes = vec!["a b".into()])),
            (
                "default_scopes",
                Box::new(|c| c.default_scopes = vec!["admin".into()]),
            ),
            (
                "scope_descriptions",
                Box::new(|c| {
                    c.scope_descriptions
                        .insert("admin".into(), "Administer".into());
                }),
            ),
            (
                "scope_descriptions",
                Box::new(|c| {
                    c.scope_descriptions.insert("mcp".into(), " ".into());
                }),
            ),
            (
                "scope_descriptions",
                Box::new(|c| {
                    c.scope_descriptions.insert("mcp".into(), "a\nb".into());
                }),
            ),
            (
                "scope_descriptions",
                Box::new(|c| {
                    c.scopes = vec!["files".into()];
                    c.default_scopes = vec!["files".into()];
                }),
            ),
            ("code_lifetime_secs", Box::new(|c| c.code_lifetime_secs = 0)),
            (
                "code_lifetime_secs",
                Box::new(|c| c.code_lifetime_secs = 3600),
            ),
            (
                "refresh_grace_secs",
                Box::new(|c| c.refresh_grace_secs = u64::MAX),
            ),
            (
                "client_redirect_uris",
                Box::new(|c| c.client_redirect_uris = vec!["http://evil.example/cb".into()]),
            ),
            (
                "native_redirect_uris",
                Box::new(|c| c.native_redirect_uris = vec!["https://x.example/cb".into()]),
            ),
            (
                "rate_limits.auth",
                Box::new(|c| c.rate_limits.auth = RateLimit::new(0, 1)),
            ),
            (
                "rate_limits.refused",
                Box::new(|c| c.rate_limits.refused = RateLimit::new(1, 0)),
            ),
            (
                "introspection_clients",
                Box::new(|c| c.introspection_clients = vec![" ".into()]),
            ),
            (
                "cimd_allow_loopback_http_for_testing",
                Box::new(|c| c.cimd_allow_loopback_http_for_testing = true),
            ),
            (
                "cimd_allowed_ports",
                Box::new(|c| c.cimd_allowed_ports = Vec::new()),
            ),
            (
                "cimd_allowed_ports",
                Box::new(|c| c.cimd_allowed_ports = vec![443, 0]),
            ),
        ];
        for (field, mutate) in cases {
            let mut c = config();
            mutate(&mut c);
            assert_eq!(field_of(&c), field);
        }
    }

    /// Every duration field, and how to set it. Kept by hand on purpose: a duration added to
    /// `durations()` without a row here fails `every_duration_is_listed`.
    /// Sets one field of a configuration.
    type Setter = fn(&mut OAuthConfig, u64);

    fn duration_fields() -> Vec<(&'static str, Setter)> {
        vec![
            ("token_lifetime_secs", |c, v| c.token_lifetime_secs = v),
            ("code_lifetime_secs", |c, v| c.code_lifetime_secs = v),
            ("refresh_token_lifetime_secs", |c, v| {
                c.refresh_token_lifetime_secs = v;
            }),
            ("refresh_grace_secs", |c, v| c.refresh_grace_secs = v),
            ("consent_lifetime_secs", |c, v| c.consent_lifetime_secs = v),
            ("registered_client_lifetime_secs", |c, v| {
                c.registered_client_lifetime_secs = Some(v);
            }),
            ("unapproved_client_lifetime_secs", |c, v| {
                c.unapproved_client_lifetime_secs = v;
            }),
            ("rate_limits.failures.window_secs", |c, v| {
                c.rate_limits.failures.window_secs = v;
            }),
        ]
    }

    #[test]
    fn every_duration_is_listed() {
        let listed: Vec<_> = duration_fields().iter().map(|(field, _)| *field).collect();
        let checked: Vec<_> = config().durations().iter().map(|d| d.field).collect();
        assert_eq!(listed, checked);
    }

    #[test]
    fn a_huge_duration_is_refused_by_name() {
        for (field, set) in duration_fields() {
            let mut c = config();
            set(&mut c, u64::MAX);
            assert_eq!(field_of(&c), field, "{field} = u64::MAX");
            let message = c.validate().unwrap_err().to_string();
            assert!(message.contains("at most"), "{message}");
        }
    }

    #[test]
    fn every_duration_at_its_maximum_is_accepted() {
        for duration in config().durations() {
            let (_, set) = duration_fields()
                .into_iter()
                .find(|(field, _)| *field == duration.field)
                .unwrap();
            let mut c = config();
            set(&mut c, duration.max);
            c.refresh_token_lifetime_secs = MAX_LONG_LIFETIME_SECS;
            c.validate()
                .unwrap_or_else(|e| panic!("{} at its maximum: {e}", duration.field));
        }
    }

    #[test]
    fn a_huge_rate_limit_is_refused_by_name() {
        for tier in [
            RateLimit::new(MAX_RATE_LIMIT + 1, 1),
            RateLimit::new(1, u32::MAX),
        ] {
            let mut c = config();
            c.rate_limits.general = tier;
            assert_eq!(field_of(&c), "rate_limits.general", "{tier:?}");
        }
        let mut c = config();
        c.rate_limits.general = RateLimit::new(1, MAX_RATE_LIMIT);
        c.validate().unwrap();
    }

    #[test]
    fn error_message_names_field_and_reason() {
        let mut c = config();
        c.server_url = "http://mcp.example.com".into();
        let message = c.validate().unwrap_err().to_string();
        assert!(message.contains("server_url"), "{message}");
        assert!(message.contains("https"), "{message}");
    }
}
