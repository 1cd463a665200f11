//! Finding a client, whether pre-registered in the configuration or registered dynamically.

use crate::store::{
    ClientRecord, ClientStore, StoreError, TokenEndpointAuthMethod, TokenHash, UnixTime,
};

/// The pre-registered confidential client from the configuration.
#[derive(Clone, Debug)]
pub(crate) struct PreRegistered {
    pub(crate) client_id: String,
    pub(crate) secret_hash: TokenHash,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) name: String,
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
}

impl Client {
    fn from_record(record: ClientRecord) -> Self {
        let secret_hash = if record.auth_method == TokenEndpointAuthMethod::None {
            None
        } else {
            record.secret_hash
        };
        Self {
            may_refresh: record.grant_types.iter().any(|g| g == "refresh_token"),
            may_use_code: record.grant_types.iter().any(|g| g == "authorization_code"),
            client_id: record.client_id,
            secret_hash,
            redirect_uris: record.redirect_uris,
            name: record.client_name,
            pre_registered: false,
        }
    }
}

/// Look a client up. `None` if unknown or lapsed.
pub(crate) async fn find(
    pre: &PreRegistered,
    store: &dyn ClientStore,
    client_id: &str,
) -> Result<Option<Client>, StoreError> {
    if client_id == pre.client_id {
        return Ok(Some(Client {
            client_id: pre.client_id.clone(),
            secret_hash: Some(pre.secret_hash),
            redirect_uris: pre.redirect_uris.clone(),
            name: Some(pre.name.clone()),
            pre_registered: true,
            may_refresh: true,
            may_use_code: true,
        }));
    }
    if client_id.len() > 256 {
        return Ok(None);
    }
    let record = store.get(client_id).await?;
    Ok(record
        .filter(|r| r.is_live(UnixTime::now()))
        .map(Client::from_record))
}
