//! What the owner does to grants and clients, as protocol operations: revoke a grant, delete a
//! client, clear registrations nobody approved. The console presents them; the order of the steps,
//! which is what makes them hold under concurrent issuance, lives here.

use super::AuthServer;
use super::client_metadata;
use crate::audit::AuditEvent;
use crate::store::{ClientRecord, GrantId, StoreError};

/// Why a client could not be deleted.
#[derive(Debug)]
pub(crate) enum DeleteClientError {
    /// The configured client: it lives in the configuration.
    PreRegistered,
    /// A machine client: it lives in the configuration too; its tokens are revoked one by one.
    MachineClient,
    /// Neither registered, nor holding a grant, nor a metadata-document URL when those are on.
    NotFound,
    Store(StoreError),
}

impl From<StoreError> for DeleteClientError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl AuthServer {
    /// Every registered client (dynamic registrations; not the configured one, not
    /// metadata-document clients).
    pub(crate) async fn registered_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.clients.list().await
    }

    /// Revoke one grant for the owner: its access and refresh tokens stop working at once.
    /// Returns whether there was such a grant.
    pub(crate) async fn revoke_grant_for_owner(
        &self,
        grant_id: &GrantId,
    ) -> Result<bool, StoreError> {
        let client_id = self
            .list_grants()
            .await?
            .into_iter()
            .find(|(id, _)| id == grant_id)
            .map(|(_, summary)| summary.client_id);
        let removed = self.revoke_grant(grant_id).await?;
        match client_id {
            Some(client_id) => {
                self.owner_revoked(client_id, grant_id);
                Ok(true)
            }
            None => Ok(removed > 0),
        }
    }

    /// Revoke every grant of a client and delete its registration; returns how many grants were
    /// listed and revoked. A metadata-document client loses its grants but may ask for approval
    /// again.
    ///
    /// In this order: first the client's revocation marker, which every issuance checks after
    /// writing its tokens, so a grant the listing misses (its record being written at that moment)
    /// is revoked by the issuance itself; then the registration, so that a grant approved after
    /// the marker belongs to a client nothing can authenticate as any more (a metadata-document
    /// client approved again may connect again); then the listed grants.
    pub(crate) async fn delete_client(&self, client_id: &str) -> Result<usize, DeleteClientError> {
        if client_id == self.settings.pre_registered.client_id {
            return Err(DeleteClientError::PreRegistered);
        }
        if self.machine_client(client_id).is_some() {
            return Err(DeleteClientError::MachineClient);
        }
        self.mark_client_revoked(client_id).await?;
        // A metadata-document client is no longer approved (until an approval from here on).
        let document_client = self
            .metadata_documents
            .as_ref()
            .filter(|_| client_metadata::is_url_client_id(client_id));
        if let Some(documents) = document_client {
            documents.removed(client_id).await;
        }
        let deleted = self.clients.delete(client_id).await?;
        let grants: Vec<_> = self
            .list_grants()
            .await?
            .into_iter()
            .filter(|(_, summary)| summary.client_id == client_id)
            .collect();
        for (grant_id, _) in &grants {
            self.revoke_grant(grant_id).await?;
            self.owner_revoked(client_id.to_owned(), grant_id);
        }
        // A metadata-document client has no registration, and its one grant may be the one the
        // listing missed: it is found as long as its URL is a client id here.
        if !deleted && grants.is_empty() && document_client.is_none() {
            return Err(DeleteClientError::NotFound);
        }
        self.audit.emit(AuditEvent::ClientDeleted {
            client_id: client_id.to_owned(),
        });
        Ok(grants.len())
    }

    /// Delete a registration the owner never approved; `false` if it was approved meanwhile (or
    /// is gone). Atomic in the store.
    pub(crate) async fn delete_unapproved_client(
        &self,
        client_id: &str,
    ) -> Result<bool, StoreError> {
        let deleted = self.clients.delete_unapproved(client_id).await?;
        if deleted {
            self.audit.emit(AuditEvent::ClientDeleted {
                client_id: client_id.to_owned(),
            });
        }
        Ok(deleted)
    }

    fn owner_revoked(&self, client_id: String, grant_id: &GrantId) {
        self.audit.emit(AuditEvent::GrantRevokedByOwner {
            client_id,
            grant_id: grant_id.clone(),
        });
    }
}
