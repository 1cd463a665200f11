//! Finding a client: pre-registered in the configuration, registered dynamically, or described by a
//! Client ID Metadata Document at its URL client id.

use super::AuthServer;
use super::assertion::keys::AssertionRules;
use super::client_metadata::{self, DocumentError};
use super::registered_keys;
use crate::audit::{Source, StepKind};
use crate::rules::limits::MAX_REGISTERED_CLIENT_ID_BYTES;
use crate::store::{ClientRecord, ClientStore, StoreError, TokenEndpointAuthMethod, TokenHash};

/// The pre-registered confidential client from the configuration.
#[derive(Clone, Debug)]
pub(crate) struct PreRegistered {
    pub(crate) client_id: String,
    /// `None`: configured with keys and no secret; it must sign.
    pub(crate) secret_hash: Option<TokenHash>,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) name: String,
    /// Its public keys, if configured: it may sign assertions instead of sending its secret.
    pub(crate) assertion: Option<AssertionRules>,
}

/// A client as the protocol rules see it.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    pub(crate) client_id: String,
    pub(crate) secret_hash: Option<TokenHash>,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) name: Option<String>,
    pub(crate) pre_registered: bool,
    pub(crate) may_refresh: bool,
    pub(crate) may_use_code: bool,
    /// For a client described by a metadata document: the host (and port, when not the default)
    /// serving it, which vouches for the client id. `None` for other clients.
    pub(crate) metadata_host: Option<String>,
    /// How it may authenticate with a signed assertion (`private_key_jwt`); `None`: it may not.
    pub(crate) assertion: Option<AssertionRules>,
    /// For a machine client: the scopes it may have with `client_credentials`. `None`: it is
    /// no machine client, and may not use that grant.
    pub(crate) machine_scopes: Option<Vec<String>>,
}

impl Client {
    /// `fetches_key_sets`: whether this server fetches registered key sets (metadata documents
    /// on); where it does not, a client registered with a `jwks_uri` verifies nothing.
    fn from_record(record: ClientRecord, fetches_key_sets: bool) -> Self {
        // Only the methods that use it look at a stored hash: a public client or one that signs
        // never passes by a secret.
        let secret_hash = record
            .auth_method
            .has_secret()
            .then_some(record.secret_hash)
            .flatten();
        // A client registered for `private_key_jwt` must sign, even if its keys went missing.
        let assertion = (record.auth_method == TokenEndpointAuthMethod::PrivateKeyJwt).then(|| {
            registered_keys::assertion_rules(record.assertion_keys.as_ref(), fetches_key_sets)
        });
        Self {
            may_refresh: record.grant_types.iter().any(|g| g == "refresh_token"),
            may_use_code: record.grant_types.iter().any(|g| g == "authorization_code"),
            client_id: record.client_id,
            secret_hash,
            redirect_uris: record.redirect_uris,
            name: record.client_name,
            pre_registered: false,
            metadata_host: None,
            assertion,
            machine_scopes: None,
        }
    }
}

/// Why a client could not be looked up (as opposed to: it does not exist).
#[derive(Debug)]
pub(crate) enum FindError {
    /// The client store failed.
    Store(StoreError),
    /// The client id is a metadata document URL without a usable document.
    Document(DocumentError),
}

impl From<StoreError> for FindError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl AuthServer {
    /// Look a client up. `None` if unknown or lapsed. A URL client id is resolved through its
    /// metadata document when those are switched on, and is simply unknown otherwise.
    pub(crate) async fn find_client(&self, client_id: &str) -> Result<Option<Client>, FindError> {
        let pre = &self.settings.pre_registered;
        if client_id == pre.client_id {
            return Ok(Some(Client {
                client_id: pre.client_id.clone(),
                secret_hash: pre.secret_hash,
                redirect_uris: pre.redirect_uris.clone(),
                name: Some(pre.name.clone()),
                pre_registered: true,
                may_refresh: true,
                may_use_code: true,
                metadata_host: None,
                assertion: pre.assertion.clone(),
                machine_scopes: None,
            }));
        }
        if let Some(machine) = self.machine_client(client_id) {
            return Ok(Some(machine.client()));
        }
        if let Some(documents) = &self.metadata_documents
            && client_metadata::is_url_client_id(client_id)
        {
            return match documents.client(client_id).await {
                Ok(client) => Ok(Some(client)),
                Err(error) => {
                    self.note_document_failure(client_id, &error);
                    Err(FindError::Document(error))
                }
            };
        }
        let fetches_key_sets = self.settings.client_id_metadata_documents;
        Ok(find_registered(&*self.clients, client_id, fetches_key_sets).await?)
    }

    /// Tell the owner's connection doctor what went wrong with a client's metadata document, in
    /// full: the client and the public page are told a category only
    /// ([`DocumentError::public_description`]).
    fn note_document_failure(&self, client_id: &str, error: &DocumentError) {
        let code = error.token_error().code;
        self.audit.doctor().record(
            Source::of(Some(client_id), None),
            StepKind::MetadataDocument,
            Some((code.as_str(), &error.detail())),
            None,
        );
    }

    /// Record the owner's approval of a client: a dynamically registered one becomes approved and
    /// gets the configured lifetime, so it no longer counts toward the cap on unapproved
    /// registrations. A metadata-document client's last good document is kept where no flood of
    /// other client ids can push it out. The pre-registered client needs nothing. `false` if the
    /// registration lapsed or was removed meanwhile.
    pub(crate) async fn record_client_approval(&self, client_id: &str) -> Result<bool, StoreError> {
        if client_id == self.settings.pre_registered.client_id {
            return Ok(true);
        }
        if let Some(documents) = &self.metadata_documents
            && client_metadata::is_url_client_id(client_id)
        {
            documents.approved(client_id).await;
            return Ok(true);
        }
        let now = self.now();
        let expires_at = self
            .settings
            .client_lifetime_secs
            .map(|secs| now.plus(secs));
        self.clients.mark_approved(client_id, now, expires_at).await
    }
}

/// A dynamically registered client. `None` if unknown or lapsed.
async fn find_registered(
    store: &dyn ClientStore,
    client_id: &str,
    fetches_key_sets: bool,
) -> Result<Option<Client>, StoreError> {
    if client_id.len() > MAX_REGISTERED_CLIENT_ID_BYTES {
        return Ok(None);
    }
    // The store, seen through the server's clock, answers only with a live record.
    Ok(store
        .get(client_id)
        .await?
        .map(|record| Client::from_record(record, fetches_key_sets)))
}
