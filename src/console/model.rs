//! What the owner console (and an application's own admin surface) sees.

use crate::oauth::TokenSubject;
use crate::store::{GrantId, StoreError, UnixTime};

/// How a client came to be known.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Registration {
    /// The client in the configuration (`client_id` / `client_secret`).
    PreRegistered,
    /// A machine client in the configuration (`machine_clients`): it gets tokens for itself
    /// with `client_credentials`, approved by no one at the time.
    Machine,
    /// It registered itself (RFC 7591).
    Dynamic {
        /// When.
        registered_at: UnixTime,
        /// When the registration lapses, if ever.
        expires_at: Option<UnixTime>,
    },
    /// Its id is the URL of a Client ID Metadata Document on this host.
    MetadataDocument {
        /// The host serving the document.
        host: String,
    },
    /// A registration that no longer exists (deleted or lapsed) while its grant lives on.
    Gone,
}

impl Registration {
    /// In words, for the console.
    pub fn describe(&self) -> String {
        match self {
            Self::PreRegistered => "Pre-registered in the server configuration".to_owned(),
            Self::Machine => {
                "Machine client in the server configuration (client_credentials, no approval)"
                    .to_owned()
            }
            Self::Dynamic { .. } => "Registered itself (dynamic client registration)".to_owned(),
            Self::MetadataDocument { host } => format!("Metadata document at {host}"),
            Self::Gone => "Registration deleted or lapsed".to_owned(),
        }
    }
}

/// A client the server knows.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo {
    /// Its id.
    pub client_id: String,
    /// The name it gave itself (self-asserted), if any.
    pub name: Option<String>,
    /// How it registered.
    pub registration: Registration,
    /// Its registered redirect URIs (empty for metadata-document clients, whose document says).
    pub redirect_uris: Vec<String>,
    /// How many live grants it holds.
    pub grants: usize,
    /// A dynamically registered client the owner has never approved: what a stranger can
    /// register in bulk, and what [`remove_unapproved_clients`](crate::console::Admin::remove_unapproved_clients)
    /// removes when it holds no grant.
    pub never_approved: bool,
}

impl ClientInfo {
    /// Whether the owner's bulk removal of never-approved clients takes this one: never approved,
    /// and holding no grant (a registration from before approvals were recorded may hold one).
    pub fn is_removable_as_unapproved(&self) -> bool {
        self.never_approved && self.grants == 0
    }
}

/// One approval by the owner, and the tokens it has produced; or one token a machine client got
/// for itself ([`TokenSubject::Machine`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GrantInfo {
    /// The grant.
    pub grant_id: GrantId,
    /// The client holding it.
    pub client_id: String,
    /// The client's self-asserted name, if known.
    pub client_name: Option<String>,
    /// How the client registered.
    pub registration: Registration,
    /// Where the approval sent the browser back to (`scheme://host[:port]`), if recorded.
    pub redirect_origin: Option<String>,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// When the owner approved.
    pub approved_at: UnixTime,
    /// The latest use seen: an MCP request (by this process) or a token issued (by any).
    pub last_used_at: Option<UnixTime>,
    /// When the newest access token expires.
    pub access_expires_at: Option<UnixTime>,
    /// When the newest refresh token expires.
    pub refresh_expires_at: Option<UnixTime>,
    /// On whose authority its tokens act: the owner's approval, or a machine client's own (then
    /// `approved_at` is when the token was issued, and there is no refresh token).
    pub subject: TokenSubject,
}

/// One of the owner's passkeys.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PasskeyInfo {
    /// Its credential id (base64url).
    pub credential_id: String,
    /// Its label.
    pub label: String,
    /// When it was registered.
    pub created_at: UnixTime,
    /// When it last approved something or signed in, if ever.
    pub last_used_at: Option<UnixTime>,
}

/// Why an owner operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// Nothing by that id.
    #[error("no {0} with that id")]
    NotFound(&'static str),
    /// The last passkey cannot be removed: nobody could approve anything afterwards.
    #[error("the last passkey cannot be removed; add another first")]
    LastPasskey,
    /// The pre-registered client lives in the configuration and cannot be deleted here.
    #[error("the pre-registered client is part of the configuration; revoke its grants instead")]
    PreRegistered,
    /// A machine client lives in the configuration and cannot be deleted here.
    #[error(
        "a machine client is part of the configuration; revoke its tokens, or remove it from the configuration"
    )]
    MachineClient,
    /// The label is empty after cleaning.
    #[error("the label is empty")]
    EmptyLabel,
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::passkey::ChangeRefused> for ConsoleError {
    fn from(refused: crate::passkey::ChangeRefused) -> Self {
        use crate::passkey::ChangeRefused;
        match refused {
            ChangeRefused::NotFound => Self::NotFound("passkey"),
            ChangeRefused::LastPasskey => Self::LastPasskey,
            ChangeRefused::EmptyLabel => Self::EmptyLabel,
            ChangeRefused::Store(error) => Self::Store(error),
        }
    }
}
