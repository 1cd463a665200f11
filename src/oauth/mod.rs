//! The protocol rules, free of any HTTP framework: every function takes plain values (query bytes,
//! form bytes, header strings) and returns plain results, so each rule is testable on its own.

mod authorize;
mod bearer;
pub(crate) mod budget;
pub(crate) mod client_auth;
pub(crate) mod client_metadata;
mod client_revocation;
pub(crate) mod clients;
mod error;
pub(crate) mod grants;
mod introspect;
pub(crate) mod limits;
mod mcp_scopes;
pub(crate) mod metadata;
pub(crate) mod params;
pub(crate) mod pkce;
mod records;
pub(crate) mod redirect;
mod refresh;
mod register;
mod resource;
mod revoke;
pub(crate) mod scope;
pub(crate) mod secret;
mod successor;
#[cfg(test)]
#[cfg(feature = "memory")]
pub(crate) mod tests;
mod token;

use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) use authorize::Rejection;
pub(crate) use bearer::BearerError;
pub use bearer::TokenInfo;
pub(crate) use error::log_store_error;
pub use error::{ErrorCode, OAuthError};
pub use mcp_scopes::McpScopes;
pub(crate) use register::RegisterError;
pub(crate) use resource::Resource;

use crate::clock::Clock;
use crate::store::{ClientStore, TokenStore, UnixTime};
use client_metadata::MetadataDocuments;
use clients::PreRegistered;

/// Settings the protocol rules need, derived once from [`OAuthConfig`](crate::OAuthConfig).
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) issuer: String,
    pub(crate) app_name: String,
    pub(crate) resource: Resource,
    /// The path-suffixed protected resource metadata URL, named in every challenge.
    pub(crate) resource_metadata_url: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) default_scopes: Vec<String>,
    /// Plain-language descriptions shown next to scope codes on the consent page.
    pub(crate) scope_descriptions: BTreeMap<String, String>,
    pub(crate) token_lifetime_secs: u64,
    pub(crate) code_lifetime_secs: u64,
    pub(crate) refresh_token_lifetime_secs: u64,
    pub(crate) refresh_grace_secs: u64,
    pub(crate) consent_lifetime_secs: u64,
    pub(crate) dynamic_registration: bool,
    /// The clients that may introspect tokens (the resource servers).
    pub(crate) introspection_clients: Vec<String>,
    /// Whether URL client ids are resolved through Client ID Metadata Documents (the `cimd`
    /// feature is on and so is the configuration flag).
    pub(crate) client_id_metadata_documents: bool,
    /// How long a registered client lives once approved; `None`: forever.
    pub(crate) client_lifetime_secs: Option<u64>,
    /// How many registrations may await their first approval at once.
    pub(crate) max_unapproved_clients: u64,
    /// How long a registration lives until its first approval.
    pub(crate) unapproved_client_lifetime_secs: u64,
    pub(crate) native_redirect_uris: Vec<String>,
    pub(crate) pre_registered: PreRegistered,
}

/// The authorization server and resource-server checks over the chosen stores.
pub(crate) struct AuthServer {
    pub(crate) settings: Settings,
    pub(crate) audit: crate::audit::Audit,
    /// Where every expiry written or checked takes its time from.
    pub(crate) clock: Clock,
    /// Seen through `clock`: a record past its expiry by that clock is absent.
    pub(crate) tokens: Arc<dyn TokenStore>,
    /// Seen through `clock`, as `tokens` is.
    pub(crate) clients: Arc<dyn ClientStore>,
    /// The resolver for URL client ids; `None` when metadata documents are off.
    pub(crate) metadata_documents: Option<Arc<dyn MetadataDocuments>>,
}

impl AuthServer {
    /// The time by the server's clock.
    pub(crate) fn now(&self) -> UnixTime {
        self.clock.now()
    }
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}
