//! The metrics an audit event moves: tokens issued, refresh-token reuse, revocations,
//! registrations, the owner's decisions (names and labels in the README; every label value is
//! one of a fixed few).

use super::AuditEvent;

/// The counters an audit event moves: tokens issued, refresh-token reuse, revocations,
/// registrations, the owner's decisions.
pub(super) fn count(event: &AuditEvent) {
    let issued = |grant_type: &'static str| {
        metrics::counter!("mcp_oauth_tokens_issued_total", "grant_type" => grant_type).increment(1);
    };
    let reuse = |result: &'static str| {
        metrics::counter!("mcp_oauth_refresh_reuse_total", "result" => result).increment(1);
    };
    let revoked = |reason: &'static str| {
        metrics::counter!("mcp_oauth_revocations_total", "reason" => reason).increment(1);
    };
    let decided = |decision: &'static str| {
        metrics::counter!("mcp_oauth_authorizations_total", "decision" => decision).increment(1);
    };
    match event {
        AuditEvent::CodeRedeemed { .. } => issued("authorization_code"),
        AuditEvent::RefreshRotated { .. } | AuditEvent::RefreshRetryRotated { .. } => {
            issued("refresh_token");
        }
        AuditEvent::MachineTokenIssued { .. } => issued("client_credentials"),
        AuditEvent::RefreshRedelivered { .. } => reuse("within_grace"),
        AuditEvent::RefreshReuseRevoked { .. } | AuditEvent::RefreshStaleRetryRevoked { .. } => {
            reuse("revoked");
            revoked("refresh_reuse");
        }
        AuditEvent::CodeReplayed { .. } => revoked("code_replay"),
        AuditEvent::TokenRevoked { .. } => revoked("client"),
        AuditEvent::GrantRevokedByOwner { .. } => revoked("owner"),
        AuditEvent::ClientDeleted { .. } => revoked("client_deleted"),
        AuditEvent::ClientRegistered { auth_method, .. } => {
            metrics::counter!("mcp_oauth_registrations_total", "auth_method" => bounded_method(auth_method))
                .increment(1);
        }
        AuditEvent::AuthorizationApproved { .. } => decided("approved"),
        AuditEvent::AuthorizationDenied { .. } => decided("denied"),
        _ => {}
    }
}

/// A registration's authentication method, as one of the names this server accepts.
fn bounded_method(method: &str) -> &'static str {
    match method {
        "none" => "none",
        "client_secret_post" => "client_secret_post",
        "client_secret_basic" => "client_secret_basic",
        "private_key_jwt" => "private_key_jwt",
        _ => "other",
    }
}
