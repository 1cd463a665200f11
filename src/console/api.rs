//! The owner's operations as a Rust API on [`McpOAuth`], for an application's own admin surface.

use super::{Admin, ClientInfo, ConnectionTrace, ConsoleError, GrantInfo, PasskeyInfo};
use crate::McpOAuth;
use crate::store::{GrantId, StoreError};

impl McpOAuth {
    fn admin(&self) -> Admin<'_> {
        Admin {
            server: &self.state.server,
        }
    }

    /// Every live grant (one per approval), the most recently approved first.
    ///
    /// # Errors
    ///
    /// A store failed.
    pub async fn grants(&self) -> Result<Vec<GrantInfo>, StoreError> {
        self.admin().grants().await
    }

    /// Revoke a grant: its access and refresh tokens stop working at once, on every instance
    /// sharing the store, including tokens minted while the revocation runs.
    ///
    /// # Errors
    ///
    /// [`ConsoleError::NotFound`] if no such grant is live, or a store failure.
    pub async fn revoke_grant(&self, grant_id: &GrantId) -> Result<(), ConsoleError> {
        self.admin().revoke_grant(grant_id).await
    }

    /// Every client known: the pre-registered one, registered ones, and metadata-document clients
    /// that hold grants. Those with grants first, then the other approved ones, then those never
    /// approved.
    ///
    /// # Errors
    ///
    /// A store failed.
    pub async fn clients(&self) -> Result<Vec<ClientInfo>, StoreError> {
        self.admin().clients().await
    }

    /// Revoke every grant of a client and delete its registration; returns how many grants were
    /// listed and revoked. Tokens being minted for the client at that moment, on any instance
    /// sharing the store, are revoked too. A client registered dynamically has to register again
    /// to connect; a metadata-document client has to be approved again.
    ///
    /// # Errors
    ///
    /// [`ConsoleError::PreRegistered`] for the configured client (revoke its grants instead),
    /// [`ConsoleError::NotFound`] for an unknown one (neither registered, nor holding a grant, nor
    /// a metadata-document URL when those are on), or a store failure.
    pub async fn delete_client(&self, client_id: &str) -> Result<usize, ConsoleError> {
        self.admin().delete_client(client_id).await
    }

    /// Remove every dynamically registered client the owner never approved and that holds no
    /// grant (what a flood of registrations leaves behind); returns how many were removed. A
    /// client approved while this runs is kept.
    ///
    /// # Errors
    ///
    /// A store failed.
    pub async fn remove_unapproved_clients(&self) -> Result<usize, StoreError> {
        self.admin().remove_unapproved_clients().await
    }

    /// The owner's passkeys, in registration order.
    ///
    /// # Errors
    ///
    /// A store failed.
    pub async fn passkeys(&self) -> Result<Vec<PasskeyInfo>, StoreError> {
        self.state.passkeys.infos().await
    }

    /// Give a passkey a new label (control characters dropped, at most 64 characters).
    ///
    /// # Errors
    ///
    /// [`ConsoleError::EmptyLabel`], [`ConsoleError::NotFound`], or a store failure.
    pub async fn rename_passkey(
        &self,
        credential_id: &str,
        label: &str,
    ) -> Result<(), ConsoleError> {
        self.state.passkeys.rename(credential_id, label).await
    }

    /// Remove a passkey. Console sessions signed in with it end.
    ///
    /// # Errors
    ///
    /// [`ConsoleError::LastPasskey`] for the only passkey, [`ConsoleError::NotFound`], or a store
    /// failure.
    pub async fn remove_passkey(&self, credential_id: &str) -> Result<(), ConsoleError> {
        self.state.passkeys.remove(credential_id).await
    }

    /// The connection doctor: the recent steps of each client's connection attempts, most
    /// recently active first. Kept in this process's memory, bounded, without secrets.
    pub fn connection_traces(&self) -> Vec<ConnectionTrace> {
        self.state.server.audit.journal().traces()
    }
}
