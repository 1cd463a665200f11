//! The protocol rules, free of any HTTP framework: every function takes plain values (query bytes,
//! form bytes, header strings) and returns plain results, so each rule is testable on its own.

pub(crate) mod assertion;
mod authorize;
mod bearer;
pub(crate) mod budget;
mod challenge;
pub(crate) mod client_auth;
pub(crate) mod client_format;
pub(crate) mod client_metadata;
mod client_revocation;
pub(crate) mod clients;
mod error;
pub(crate) mod grants;
mod introspect;
pub(crate) mod machine;
pub(crate) mod metadata;
mod owner;
pub(crate) mod params;
mod payload;
pub(crate) mod pkce;
mod refresh;
mod register;
mod registered_keys;
mod resource;
mod revoke;
pub(crate) mod scope;
mod scope_policy;
mod successor;
#[cfg(test)]
#[cfg(feature = "memory")]
pub(crate) mod tests;
mod token;

use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) use authorize::{Decision, Rejection};
pub(crate) use bearer::BearerError;
pub(crate) use bearer::sent_credentials;
pub use bearer::{TokenInfo, TokenSubject};
#[cfg(test)]
pub(crate) use challenge::BearerRules;
pub(crate) use challenge::{Challenge, Refusal};
pub(crate) use error::log_store_error;
pub(crate) use error::{ErrorCode, OAuthError};
pub(crate) use owner::DeleteClientError;
pub(crate) use register::RegisterError;
pub(crate) use resource::Resource;
pub use scope_policy::ScopePolicy;

use crate::clock::Clock;
use crate::store::{ClientStore, TokenStore, UnixTime};
use assertion::KeySets;
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
    /// The clients that may use `client_credentials`.
    pub(crate) machine_clients: Vec<machine::MachineClient>,
}

/// The authorization server and resource-server checks over the chosen stores.
pub(crate) struct AuthServer {
    settings: Settings,
    audit: crate::audit::Audit,
    /// Where every expiry written or checked takes its time from.
    clock: Clock,
    /// Seen through `clock`: a record past its expiry by that clock is absent.
    tokens: Arc<dyn TokenStore>,
    /// Seen through `clock`, as `tokens` is.
    clients: Arc<dyn ClientStore>,
    /// The resolver for URL client ids; `None` when metadata documents are off.
    metadata_documents: Option<Arc<dyn MetadataDocuments>>,
    /// The fetcher for clients' `jwks_uri`; `None` when nothing may be fetched.
    key_sets: Option<Arc<dyn KeySets>>,
}

impl AuthServer {
    pub(crate) fn new(
        settings: Settings,
        audit: crate::audit::Audit,
        clock: Clock,
        tokens: Arc<dyn TokenStore>,
        clients: Arc<dyn ClientStore>,
        metadata_documents: Option<Arc<dyn MetadataDocuments>>,
        key_sets: Option<Arc<dyn KeySets>>,
    ) -> Self {
        Self {
            settings,
            audit,
            clock,
            tokens,
            clients,
            metadata_documents,
            key_sets,
        }
    }

    /// The issuer: the configured server URL.
    pub(crate) fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The protected resource (the server URL and the MCP path).
    pub(crate) fn resource(&self) -> &Resource {
        &self.settings.resource
    }

    /// The scopes this server knows.
    pub(crate) fn scopes(&self) -> &[String] {
        &self.settings.scopes
    }

    /// Plain-language descriptions of the scopes, for the consent page.
    pub(crate) fn scope_descriptions(&self) -> &BTreeMap<String, String> {
        &self.settings.scope_descriptions
    }

    /// The client configured in [`OAuthConfig`](crate::OAuthConfig).
    pub(crate) fn pre_registered(&self) -> &PreRegistered {
        &self.settings.pre_registered
    }

    /// Where events go: the log, the application's callback, the connection doctor.
    pub(crate) fn audit(&self) -> &crate::audit::Audit {
        &self.audit
    }

    /// Purge expired records from the token and client stores; how many went from each.
    pub(crate) async fn purge_expired(&self) -> [Result<u64, crate::store::StoreError>; 2] {
        [
            self.tokens.delete_expired().await,
            self.clients.delete_expired().await,
        ]
    }

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
