//! The owner's operations: list and revoke grants, list and delete clients, manage passkeys, read
//! the connection doctor. The console's endpoints call them, and so can an application's own
//! admin surface, through [`McpOAuth::admin`](crate::McpOAuth::admin).

use std::collections::HashMap;

use super::{ClientInfo, ConnectionTrace, ConsoleError, GrantInfo, PasskeyInfo, Registration};
use crate::oauth::grants::GrantSummary;
use crate::oauth::machine::is_machine_grant;
use crate::oauth::{AuthServer, DeleteClientError, TokenSubject};
use crate::passkey::Passkeys;
use crate::rules::redirect_uri;
use crate::store::{ClientRecord, GrantId, StoreError};

/// The owner's operations on one server, from [`McpOAuth::admin`](crate::McpOAuth::admin).
///
/// ```no_run
/// # async fn run(oauth: mcp_oauth::McpOAuth) -> Result<(), Box<dyn std::error::Error>> {
/// for grant in oauth.admin().grants().await? {
///     println!("{} holds {:?}", grant.client_id, grant.scopes);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Copy)]
pub struct Admin<'a> {
    server: &'a AuthServer,
    passkeys: &'a Passkeys,
}

impl std::fmt::Debug for Admin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl<'a> Admin<'a> {
    pub(crate) fn new(server: &'a AuthServer, passkeys: &'a Passkeys) -> Self {
        Self { server, passkeys }
    }

    /// Every live grant (one per approval), the most recently approved first.
    ///
    /// # Errors
    ///
    /// A store failed.
    pub async fn grants(&self) -> Result<Vec<GrantInfo>, StoreError> {
        Ok(self.overview().await?.0)
    }

    /// Every client known: the pre-registered one, the machine clients, registered ones, and metadata-document clients
    /// that hold grants. Those with grants first, then the other approved ones, then those never
    /// approved.
    ///
    /// # Errors
    ///
    /// A store failed.
    pub async fn clients(&self) -> Result<Vec<ClientInfo>, StoreError> {
        Ok(self.overview().await?.1)
    }

    /// The owner's passkeys, in registration order.
    ///
    /// # Errors
    ///
    /// A store failed.
    pub async fn passkeys(&self) -> Result<Vec<PasskeyInfo>, StoreError> {
        Ok(self
            .passkeys
            .list()
            .await?
            .into_iter()
            .map(|record| PasskeyInfo {
                credential_id: record.credential_id,
                label: record.label,
                created_at: record.created_at,
                last_used_at: record.last_used_at,
            })
            .collect())
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
        Ok(self.passkeys.rename(credential_id, label).await?)
    }

    /// Remove a passkey. Console sessions signed in with it end.
    ///
    /// # Errors
    ///
    /// [`ConsoleError::LastPasskey`] for the only passkey, [`ConsoleError::NotFound`], or a store
    /// failure.
    pub async fn remove_passkey(&self, credential_id: &str) -> Result<(), ConsoleError> {
        Ok(self.passkeys.remove(credential_id).await?)
    }

    /// The connection doctor: the recent steps of each client's connection attempts, most
    /// recently active first. Kept in this process's memory, bounded, without secrets.
    pub fn connection_traces(&self) -> Vec<ConnectionTrace> {
        self.server.audit().doctor().traces()
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
        let doctor = self.server.audit().doctor();
        let mut out: Vec<GrantInfo> = grants
            .into_iter()
            .map(|(grant_id, summary)| {
                let (client_name, registration) = self.describe(&summary.client_id, clients);
                let last_used_at = doctor.last_used(&grant_id).max(summary.last_issued_at);
                GrantInfo {
                    redirect_origin: summary.redirect_uri.as_deref().map(redirect_uri::origin_of),
                    client_id: summary.client_id,
                    client_name,
                    registration,
                    scopes: summary.scopes,
                    approved_at: summary.approved_at,
                    last_used_at,
                    access_expires_at: summary.access_expires_at,
                    refresh_expires_at: summary.refresh_expires_at,
                    subject: if is_machine_grant(&grant_id) {
                        TokenSubject::Machine
                    } else {
                        TokenSubject::Owner
                    },
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
        let pre = &self.server.pre_registered();
        let mut out = vec![ClientInfo {
            client_id: pre.client_id.clone(),
            name: Some(pre.name.clone()),
            registration: Registration::PreRegistered,
            redirect_uris: pre.redirect_uris.clone(),
            grants: grant_counts.get(&pre.client_id).copied().unwrap_or(0),
            never_approved: false,
        }];
        // Listed even without a live token: the owner sees every program that may get one.
        for machine in self.server.machine_clients() {
            out.push(ClientInfo {
                client_id: machine.client_id.clone(),
                name: None,
                registration: Registration::Machine,
                redirect_uris: Vec::new(),
                grants: grant_counts.get(&machine.client_id).copied().unwrap_or(0),
                never_approved: false,
            });
        }
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

    /// Remove every dynamically registered client the owner never approved and that holds no
    /// grant (what a flood of registrations leaves behind); returns how many were removed. A
    /// client approved while this runs is kept.
    ///
    /// # Errors
    ///
    /// A store failed.
    pub async fn remove_unapproved_clients(&self) -> Result<usize, StoreError> {
        let (_, clients) = self.overview().await?;
        let mut removed = 0;
        for client in clients.iter().filter(|c| c.is_removable_as_unapproved()) {
            if self
                .server
                .delete_unapproved_client(&client.client_id)
                .await?
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Revoke a grant: its access and refresh tokens stop working at once, on every instance
    /// sharing the store, including tokens minted while the revocation runs.
    ///
    /// # Errors
    ///
    /// [`ConsoleError::NotFound`] if no such grant is live, or a store failure.
    pub async fn revoke_grant(&self, grant_id: &GrantId) -> Result<(), ConsoleError> {
        if self.server.revoke_grant_for_owner(grant_id).await? {
            Ok(())
        } else {
            Err(ConsoleError::NotFound("grant"))
        }
    }

    /// Revoke every grant of a client and delete its registration; returns how many grants were
    /// listed and revoked. Tokens being minted for the client at that moment, on any instance
    /// sharing the store, are revoked too. A client registered dynamically has to register again
    /// to connect; a metadata-document client has to be approved again.
    ///
    /// # Errors
    ///
    /// [`ConsoleError::PreRegistered`] for the configured client (revoke its grants instead),
    /// [`ConsoleError::MachineClient`] for a machine client (revoke its tokens instead),
    /// [`ConsoleError::NotFound`] for an unknown one (neither registered, nor holding a grant, nor
    /// a metadata-document URL when those are on), or a store failure.
    pub async fn delete_client(&self, client_id: &str) -> Result<usize, ConsoleError> {
        self.server
            .delete_client(client_id)
            .await
            .map_err(|error| match error {
                DeleteClientError::PreRegistered => ConsoleError::PreRegistered,
                DeleteClientError::MachineClient => ConsoleError::MachineClient,
                DeleteClientError::NotFound => ConsoleError::NotFound("client"),
                DeleteClientError::Store(error) => ConsoleError::Store(error),
            })
    }

    async fn registered_clients(&self) -> Result<HashMap<String, ClientRecord>, StoreError> {
        Ok(self
            .server
            .registered_clients()
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
        let pre = &self.server.pre_registered();
        if client_id == pre.client_id {
            return (Some(pre.name.clone()), Registration::PreRegistered);
        }
        if self.server.machine_client(client_id).is_some() {
            return (None, Registration::Machine);
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
        let admin = core.oauth.admin();
        let refused = admin.revoke_grant(&GrantId::generate()).await;
        assert!(
            matches!(refused, Err(ConsoleError::NotFound("grant"))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn deleting_a_client_ends_its_grants_and_its_registration() {
        let core = Core::new();
        let admin = core.oauth.admin();
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
        let admin = core.oauth.admin();
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
