//! What the protocol core keeps in [`TokenRecord::payload`](crate::store::TokenRecord::payload).
//! The only place that knows the payload layout.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::{StoreError, TokenRecord};

/// A validated authorization request awaiting the owner's decision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PendingRequest {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) state: Option<String>,
    pub(crate) code_challenge: String,
    pub(crate) scopes: Vec<String>,
}

/// An authorization code: everything it is bound to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CodeGrant {
    pub(crate) client_id: String,
    pub(crate) resource: String,
    pub(crate) redirect_uri: String,
    pub(crate) code_challenge: String,
    pub(crate) scopes: Vec<String>,
}

/// An access or refresh token: who holds it, for what, and for which resource (RFC 8707), so that
/// servers sharing a store never accept each other's tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TokenGrant {
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) resource: String,
}

/// A [`TokenGrant`] as the bearer guard reads it on every request: the resource is only compared,
/// so it is borrowed from the payload rather than allocated.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenGrantView<'a> {
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<String>,
    #[serde(borrow)]
    pub(crate) resource: std::borrow::Cow<'a, str>,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub(crate) fn decode<T: DeserializeOwned>(record: &TokenRecord) -> Result<T, StoreError> {
    serde_json::from_slice(&record.payload).map_err(|e| StoreError::codec("payload", e))
}
