//! Audit events: what happened to whom, for the log and for an optional application callback.
//! Events carry identifiers (client ids, grant ids, credential ids), never a secret. Beside them,
//! the connection doctor's memory of each client's connection steps, which events feed.

use std::fmt;
use std::sync::Arc;

mod counters;
mod doctor;

pub(crate) use doctor::{ConnectionDoctor, Source};
pub use doctor::{ConnectionStep, ConnectionTrace, StepKind};

use crate::clock::Clock;
use crate::store::GrantId;

/// A security-relevant event. Emitted as a `tracing` event on the target `mcp_oauth::audit`
/// (warnings for attacks, info otherwise), and passed to the callback given to
/// [`McpOAuthBuilder::on_audit`](crate::McpOAuthBuilder::on_audit).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditEvent {
    /// A client registered itself (RFC 7591).
    ClientRegistered {
        /// The new client.
        client_id: String,
        /// Its token endpoint authentication method.
        auth_method: &'static str,
    },
    /// The owner approved a client with a passkey; a code was issued.
    AuthorizationApproved {
        /// The client.
        client_id: String,
        /// The grant the code opens.
        grant_id: GrantId,
    },
    /// The owner denied a client.
    AuthorizationDenied {
        /// The client.
        client_id: String,
    },
    /// A code was exchanged for tokens.
    CodeRedeemed {
        /// The client.
        client_id: String,
        /// The grant.
        grant_id: GrantId,
    },
    /// A used code was presented again; the grant was revoked.
    CodeReplayed {
        /// The client.
        client_id: String,
        /// The revoked grant.
        grant_id: GrantId,
    },
    /// A refresh token was rotated.
    RefreshRotated {
        /// The client.
        client_id: String,
        /// The grant.
        grant_id: GrantId,
    },
    /// A just-rotated refresh token came back within the grace window and got the pair its
    /// rotation issued, again: one chain, shared.
    RefreshRedelivered {
        /// The client.
        client_id: String,
        /// The grant.
        grant_id: GrantId,
    },
    /// A rotated refresh token came back after the grace window; the grant was revoked.
    RefreshReuseRevoked {
        /// The client.
        client_id: String,
        /// The revoked grant.
        grant_id: GrantId,
    },
    /// A just-rotated refresh token came back within the grace window, but the refresh token it
    /// was rotated into had been rotated on already: two parties hold the chain; the grant was
    /// revoked.
    RefreshStaleRetryRevoked {
        /// The client.
        client_id: String,
        /// The revoked grant.
        grant_id: GrantId,
    },
    /// A just-rotated refresh token came back within the grace window, and its rotation had
    /// failed midway (a store outage, a crash) without answering anyone: the retry rotated it.
    RefreshRetryRotated {
        /// The client.
        client_id: String,
        /// The grant.
        grant_id: GrantId,
    },
    /// A machine client the configuration names got an access token for itself
    /// (`client_credentials`): no person approved it.
    MachineTokenIssued {
        /// The machine client.
        client_id: String,
        /// The grant the token lives in, its own.
        grant_id: GrantId,
        /// The scopes the token carries.
        scopes: Vec<String>,
    },
    /// A client revoked one of its tokens (RFC 7009).
    TokenRevoked {
        /// The client.
        client_id: String,
        /// The grant.
        grant_id: GrantId,
        /// `access` or `refresh`.
        kind: &'static str,
    },
    /// A passkey was registered.
    PasskeyRegistered {
        /// Its credential id (base64url).
        credential_id: String,
        /// Its label.
        label: String,
    },
    /// The owner removed a passkey in the console.
    PasskeyRemoved {
        /// Its credential id (base64url).
        credential_id: String,
    },
    /// The owner signed in to the console.
    ConsoleSignedIn {
        /// The passkey used.
        credential_id: String,
    },
    /// The owner revoked a grant in the console (or through the Rust API).
    GrantRevokedByOwner {
        /// The client.
        client_id: String,
        /// The revoked grant.
        grant_id: GrantId,
    },
    /// The owner deleted a client's registration and grants.
    ClientDeleted {
        /// The client.
        client_id: String,
    },
    /// A setup token was refused (wrong, or already used).
    SetupTokenRefused,
    /// A passkey assertion or registration did not verify.
    PasskeyRejected {
        /// What was attempted.
        during: &'static str,
    },
}

impl AuditEvent {
    /// A stable short name, e.g. `code_replayed`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ClientRegistered { .. } => "client_registered",
            Self::AuthorizationApproved { .. } => "authorization_approved",
            Self::AuthorizationDenied { .. } => "authorization_denied",
            Self::CodeRedeemed { .. } => "code_redeemed",
            Self::CodeReplayed { .. } => "code_replayed",
            Self::RefreshRotated { .. } => "refresh_rotated",
            Self::RefreshRedelivered { .. } => "refresh_redelivered",
            Self::RefreshReuseRevoked { .. } => "refresh_reuse_revoked",
            Self::RefreshStaleRetryRevoked { .. } => "refresh_stale_retry_revoked",
            Self::RefreshRetryRotated { .. } => "refresh_retry_rotated",
            Self::MachineTokenIssued { .. } => "machine_token_issued",
            Self::TokenRevoked { .. } => "token_revoked",
            Self::PasskeyRegistered { .. } => "passkey_registered",
            Self::PasskeyRemoved { .. } => "passkey_removed",
            Self::ConsoleSignedIn { .. } => "console_signed_in",
            Self::GrantRevokedByOwner { .. } => "grant_revoked_by_owner",
            Self::ClientDeleted { .. } => "client_deleted",
            Self::SetupTokenRefused => "setup_token_refused",
            Self::PasskeyRejected { .. } => "passkey_rejected",
        }
    }

    /// Whether this looks like an attack (or a badly broken client), logged as a warning.
    pub fn is_suspicious(&self) -> bool {
        matches!(
            self,
            Self::CodeReplayed { .. }
                | Self::RefreshReuseRevoked { .. }
                | Self::RefreshStaleRetryRevoked { .. }
                | Self::SetupTokenRefused
                | Self::PasskeyRejected { .. }
        )
    }
}

/// The application's audit callback.
pub(crate) type AuditCallback = Arc<dyn Fn(&AuditEvent) + Send + Sync>;

/// Where events go: the log, the application's callback, and the connection doctor.
#[derive(Clone, Default)]
pub(crate) struct Audit {
    callback: Option<AuditCallback>,
    doctor: Arc<ConnectionDoctor>,
}

impl fmt::Debug for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("callback", &self.callback.is_some())
            .finish()
    }
}

impl Audit {
    /// Events go to `callback` too; the connection doctor's times come from `clock`.
    pub(crate) fn new(callback: Option<AuditCallback>, clock: Clock) -> Self {
        Self {
            callback,
            doctor: Arc::new(ConnectionDoctor::new(clock)),
        }
    }

    /// The connection doctor's memory, which events are also written to.
    pub(crate) fn doctor(&self) -> &Arc<ConnectionDoctor> {
        &self.doctor
    }

    pub(crate) fn emit(&self, event: AuditEvent) {
        if event.is_suspicious() {
            tracing::warn!(target: "mcp_oauth::audit", event = event.name(), details = ?event);
        } else {
            tracing::info!(target: "mcp_oauth::audit", event = event.name(), details = ?event);
        }
        self.record_step(&event);
        counters::count(&event);
        if let Some(callback) = &self.callback {
            callback(&event);
        }
    }

    /// The events that are steps of a client's connection, for the doctor.
    fn record_step(&self, event: &AuditEvent) {
        const REPLAYED: (&str, &str) = (
            "invalid_grant",
            "a used code came back; the grant was revoked",
        );
        const REUSED: (&str, &str) = (
            "invalid_grant",
            "a rotated refresh token came back after the grace window; the grant was revoked",
        );
        const STALE: (&str, &str) = (
            "invalid_grant",
            "a rotated refresh token came back after the one it was rotated into was used; the grant was revoked",
        );
        let (client_id, kind, error, detail) = match event {
            AuditEvent::ClientRegistered {
                client_id,
                auth_method,
            } => {
                let detail = match *auth_method {
                    "none" => "a public client",
                    "private_key_jwt" => "a confidential client signing with its registered keys",
                    _ => "a confidential client",
                };
                (client_id, StepKind::Registration, None, Some(detail))
            }
            AuditEvent::AuthorizationApproved { client_id, .. } => {
                (client_id, StepKind::Approval, None, None)
            }
            AuditEvent::AuthorizationDenied { client_id } => {
                (client_id, StepKind::Denial, None, None)
            }
            AuditEvent::CodeRedeemed { client_id, .. } => {
                (client_id, StepKind::CodeExchange, None, None)
            }
            AuditEvent::CodeReplayed { client_id, .. } => {
                (client_id, StepKind::CodeExchange, Some(REPLAYED), None)
            }
            AuditEvent::RefreshRotated { client_id, .. } => {
                (client_id, StepKind::Refresh, None, None)
            }
            AuditEvent::RefreshRedelivered { client_id, .. } => (
                client_id,
                StepKind::Refresh,
                None,
                Some("a retry within the grace window, answered with the same pair"),
            ),
            AuditEvent::RefreshReuseRevoked { client_id, .. } => {
                (client_id, StepKind::Refresh, Some(REUSED), None)
            }
            AuditEvent::RefreshStaleRetryRevoked { client_id, .. } => {
                (client_id, StepKind::Refresh, Some(STALE), None)
            }
            AuditEvent::RefreshRetryRotated { client_id, .. } => (
                client_id,
                StepKind::Refresh,
                None,
                Some("a retry within the grace window, after a rotation that failed midway"),
            ),
            AuditEvent::MachineTokenIssued { client_id, .. } => (
                client_id,
                StepKind::MachineToken,
                None,
                Some("client_credentials: a token for the machine itself, no owner approval"),
            ),
            AuditEvent::TokenRevoked {
                client_id, kind, ..
            } => (client_id, StepKind::Revocation, None, Some(*kind)),
            AuditEvent::GrantRevokedByOwner { client_id, .. } => (
                client_id,
                StepKind::Revocation,
                None,
                Some("grant revoked by the owner"),
            ),
            _ => return,
        };
        self.doctor
            .record(Source::of(Some(client_id), None), kind, error, detail);
    }
}
