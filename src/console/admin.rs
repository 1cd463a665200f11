//! The owner's operations over the stores: list and revoke grants, list and delete clients.

use std::collections::HashMap;

use super::{ClientInfo, ConsoleError, GrantInfo, Registration};
use crate::audit::AuditEvent;
use crate::oauth::grants::GrantSummary;
use crate::oauth::{AuthServer, client_metadata, redirect};
use crate::store::{ClientRecord, GrantId, StoreError};

/// The owner's view of one authorization server.
pub(crate) struct Admin<'a> {
    pub(crate) server: &'a AuthServer,
}

impl Admin<'_> {
    /// Every live grant, the most recently approved first.
    pub(crate) async fn grants(&self) -> Result<Vec<GrantInfo>, StoreError> {
        Ok(self.overview().await?.0)
    }

    /// Every client known: registered ones, the pre-registered one, and metadata-document clients
    /// holding grants. Those with grants first, then by name.
    pub(crate) async fn clients(&self) -> Result<Vec<ClientInfo>, StoreError> {
        Ok(self.overview().await?.1)
    }

    /// Grants and clients from one listing of each store (a listing may scan a whole store).
    pub(crate) async fn overview(&self) -> Result<(Vec<GrantInfo>, Vec<ClientInfo>), StoreError> {
        let grants = self.server.list_grants().await?;
        let clients = self.registered_clients().await?;
        let client_infos = self.client_infos(&grants, &clients);
        Ok((self.grant_infos(grants, &clients), client_infos))
    }

    fn grant_infos(
        &self,
        grants: Vec<(GrantId, GrantSummary)>,
        clients: &HashMap<String, ClientRecord>,
    ) -> Vec<GrantInfo> {
        let journal = self.server.audit.journal();
        let mut out: Vec<GrantInfo> = grants
            .into_iter()
            .map(|(grant_id, summary)| {
                let (client_name, registration) = self.describe(&summary.client_id, clients);
                let last_used_at = journal.last_used(&grant_id).max(summary.last_issued_at);
                GrantInfo {
                    redirect_origin: summary.redirect_uri.as_deref().map(redirect::origin_of),
                    client_id: summary.client_id,
                    client_name,
                    registration,
                    scopes: summary.scopes,
                    approved_at: summary.approved_at,
                    last_used_at,
                    access_expires_at: summary.access_expires_at,
                    refresh_expires_at: summary.refresh_expires_at,
                    grant_id,
                }
            })
            .collect();
        out.sort_by_key(|grant| std::cmp::Reverse(grant.approved_at));
        out
    }

    fn client_infos(
        &self,
        grants: &[(GrantId, GrantSummary)],
        registered: &HashMap<String, ClientRecord>,
    ) -> Vec<ClientInfo> {
        let mut grant_counts: HashMap<String, usize> = HashMap::new();
        for (_, summary) in grants {
            *grant_counts.entry(summary.client_id.clone()).or_default() += 1;
        }
        let pre = &self.server.settings.pre_registered;
        let mut out = vec![ClientInfo {
            client_id: pre.client_id.clone(),
            name: Some(pre.name.clone()),
            registration: Registration::PreRegistered,
            redirect_uris: pre.redirect_uris.clone(),
            grants: grant_counts.get(&pre.client_id).copied().unwrap_or(0),
            never_approved: false,
        }];
        for client in registered.values() {
            out.push(ClientInfo {
                client_id: client.client_id.clone(),
                name: client.client_name.clone(),
                registration: Registration::Dynamic {
                    registered_at: client.issued_at,
                    expires_at: client.expires_at,
                },
                redirect_uris: client.redirect_uris.clone(),
                grants: grant_counts.get(&client.client_id).copied().unwrap_or(0),
                never_approved: !client.is_approved(),
            });
        }
        for (client_id, count) in &grant_counts {
            if out.iter().any(|c| &c.client_id == client_id) {
                continue;
            }
            let (name, registration) = self.describe(client_id, registered);
            out.push(ClientInfo {
                client_id: client_id.clone(),
                name,
                registration,
                redirect_uris: Vec::new(),
                grants: *count,
                never_approved: false,
            });
        }
        // What the owner acts on first: clients holding grants, then the other approved ones,
        // then registrations nobody approved (a flood of those sinks to the last pages).
        out.sort_by(|a, b| {
            (b.grants > 0)
                .cmp(&(a.grants > 0))
                .then_with(|| a.never_approved.cmp(&b.never_approved))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.client_id.cmp(&b.client_id))
        });
        out
    }

    /// Remove every registration the owner never approved and that holds no grant; returns how
    /// many were removed. Each removal is atomic in the store and spares a client approved
    /// meanwhile.
    pub(crate) async fn remove_unapproved_clients(&self) -> Result<usize, StoreError> {
        let (_, clients) = self.overview().await?;
        let mut removed = 0;
        for client in clients.iter().filter(|c| c.is_removable_as_unapproved()) {
            if self
                .server
                .clients
                .delete_unapproved(&client.client_id)
                .await?
            {
                removed += 1;
                self.server.audit.emit(AuditEvent::ClientDeleted {
                    client_id: client.client_id.clone(),
                });
            }
        }
        Ok(removed)
    }

    /// Revoke one grant: its access and refresh tokens stop working at once.
    pub(crate) async fn revoke_grant(&self, grant_id: &GrantId) -> Result<(), ConsoleError> {
        let summary = self
            .server
            .list_grants()
            .await?
            .into_iter()
            .find(|(id, _)| id == grant_id)
            .map(|(_, summary)| summary);
        let removed = self.server.revoke_grant(grant_id).await?;
        match summary {
            Some(summary) => {
                self.owner_revoked(&summary, grant_id);
                Ok(())
            }
            None if removed > 0 => Ok(()),
            None => Err(ConsoleError::NotFound("grant")),
        }
    }

    /// Revoke every grant of a client and delete its registration. Returns how many grants were
    /// revoked. The pre-registered client cannot be deleted (it is configuration); a
    /// metadata-document client loses its grants but may ask for approval again.
    ///
    /// In this order: first the client's revocation marker, which every issuance checks after
    /// writing its tokens, so a grant the listing misses (its record being written at that moment)
    /// is revoked by the issuance itself; then the registration, so that a grant approved after
    /// the marker belongs to a client nothing can authenticate as any more (a metadata-document
    /// client approved again may connect again); then the listed grants.
    pub(crate) async fn delete_client(&self, client_id: &str) -> Result<usize, ConsoleError> {
        if client_id == self.server.settings.pre_registered.client_id {
            return Err(ConsoleError::PreRegistered);
        }
        self.server.mark_client_revoked(client_id).await?;
        // A metadata-document client is no longer approved (until an approval from here on).
        let document_client = self
            .server
            .metadata_documents
            .as_ref()
            .filter(|_| client_metadata::is_url_client_id(client_id));
        if let Some(documents) = document_client {
            documents.removed(client_id).await;
        }
        let deleted = self.server.clients.delete(client_id).await?;
        let grants: Vec<_> = self
            .server
            .list_grants()
            .await?
            .into_iter()
            .filter(|(_, summary)| summary.client_id == client_id)
            .collect();
        for (grant_id, summary) in &grants {
            self.server.revoke_grant(grant_id).await?;
            self.owner_revoked(summary, grant_id);
        }
        // A metadata-document client has no registration, and its one grant may be the one the
        // listing missed: it is found as long as its URL is a client id here.
        if !deleted && grants.is_empty() && document_client.is_none() {
            return Err(ConsoleError::NotFound("client"));
        }
        self.server.audit.emit(AuditEvent::ClientDeleted {
            client_id: client_id.to_owned(),
        });
        Ok(grants.len())
    }

    fn owner_revoked(&self, summary: &GrantSummary, grant_id: &GrantId) {
        self.server.audit.emit(AuditEvent::GrantRevokedByOwner {
            client_id: summary.client_id.clone(),
            grant_id: grant_id.clone(),
        });
    }

    async fn registered_clients(&self) -> Result<HashMap<String, ClientRecord>, StoreError> {
        Ok(self
            .server
            .clients
            .list()
            .await?
            .into_iter()
            .map(|client| (client.client_id.clone(), client))
            .collect())
    }

    /// A client's name and registration path, without fetching anything.
    fn describe(
        &self,
        client_id: &str,
        registered: &HashMap<String, ClientRecord>,
    ) -> (Option<String>, Registration) {
        let pre = &self.server.settings.pre_registered;
        if client_id == pre.client_id {
            return (Some(pre.name.clone()), Registration::PreRegistered);
        }
        if let Some(client) = registered.get(client_id) {
            return (
                client.client_name.clone(),
                Registration::Dynamic {
                    registered_at: client.issued_at,
                    expires_at: client.expires_at,
                },
            );
        }
        match url::Url::parse(client_id) {
            Ok(url) if url.scheme() == "https" => {
                let host = url.host_str().unwrap_or_default().to_owned();
                (None, Registration::MetadataDocument { host })
            }
            _ => (None, Registration::Gone),
        }
    }
}

#[cfg(test)]
#[cfg(feature = "memory")]
mod tests {
    use super::*;
    use crate::oauth::tests::{Core, config};
    use crate::store::ClientStore;

    #[tokio::test]
    async fn revoking_a_grant_nobody_holds_is_not_found() {
        let core = Core::new();
        let admin = Admin {
            server: &core.server,
        };
        let refused = admin.revoke_grant(&GrantId::generate()).await;
        assert!(
            matches!(refused, Err(ConsoleError::NotFound("grant"))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn deleting_a_client_ends_its_grants_and_its_registration() {
        let core = Core::new();
        let admin = Admin {
            server: &core.server,
        };
        let client = core.connect().await;
        assert_eq!(admin.delete_client(&client.client_id).await.unwrap(), 1);
        assert!(!core.accepts(&client.access_token).await);
        assert!(admin.grants().await.unwrap().is_empty());
        assert!(
            core.server
                .find_client(&client.client_id)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn the_owner_sees_no_lapsed_registration_and_removes_only_unapproved_ones() {
        let core = Core::with(config(|c| c.unapproved_client_lifetime_secs = 3_600));
        let admin = Admin {
            server: &core.server,
        };
        let lapsed = core.register_public_client().await;
        core.advance(1_800);
        let waiting = core.register_public_client().await;
        let approved = core.connect().await.client_id;
        core.advance(1_800);
        let listed: Vec<String> = admin
            .clients()
            .await
            .unwrap()
            .into_iter()
            .map(|client| client.client_id)
            .collect();
        assert!(!listed.contains(&lapsed), "{listed:?}");
        assert!(
            core.store.get(&lapsed).await.unwrap().is_some(),
            "the store still holds it"
        );
        assert!(
            listed.contains(&waiting) && listed.contains(&approved),
            "{listed:?}"
        );

        assert_eq!(admin.remove_unapproved_clients().await.unwrap(), 1);
        assert!(core.server.find_client(&waiting).await.unwrap().is_none());
        assert!(core.server.find_client(&approved).await.unwrap().is_some());
    }
}
