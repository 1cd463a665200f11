//! What the protocol core keeps in [`TokenRecord::payload`](crate::store::TokenRecord::payload).
//! The only place that knows the payload layout.
//!
//! A payload is one tag byte, [`POSTCARD`], then the record in postcard's compact binary form:
//! the bearer guard decodes one on every request, and the refresh grant several, so JSON's text
//! parsing cost more than everything else they do but hashing. Records written before the tag
//! existed are JSON objects (first byte `{`), and are still read. Postcard is not
//! self-describing: a change to any of these structs needs a new tag.
//!
//! One record is encrypted on top: a [`SuccessorPair`] is encoded here, then sealed by
//! [`successor`](super::successor) before it is stored.

use serde::{Deserialize, Serialize};

use crate::store::{StoreError, TokenRecord, UnixTime};

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

/// The pair a refresh token was rotated into, as the rotation answered it: what a retry of that
/// refresh token within the grace window gets again. Holds secrets, so it is only ever stored
/// sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SuccessorPair {
    pub(crate) access_token: String,
    pub(crate) access_expires_at: UnixTime,
    pub(crate) refresh_token: String,
    pub(crate) scopes: Vec<String>,
}

impl std::fmt::Debug for SuccessorPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SuccessorPair")
            .field("access_expires_at", &self.access_expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
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

/// A machine's access token: its [`TokenGrant`], then the fingerprint of the machine's
/// credentials it was minted under and the place it holds (see [`machine`](super::machine)). Postcard writes the fields
/// in order and reads a value without looking past its end, so these bytes are a [`TokenGrant`]
/// followed by the fingerprint: every reader of a `TokenGrant` reads them as one, and only the
/// machine's check reads on.
#[derive(Serialize)]
pub(crate) struct MachineTokenGrant<'a> {
    pub(crate) grant: &'a TokenGrant,
    pub(crate) credentials: &'a [u8; 32],
    pub(crate) place: u32,
}

/// [`MachineTokenGrant`] as read back.
#[derive(Debug, Deserialize)]
pub(crate) struct MachineTokenView<'a> {
    #[serde(borrow)]
    pub(crate) grant: TokenGrantView<'a>,
    pub(crate) credentials: [u8; 32],
    pub(crate) place: u32,
}

/// The first byte of every payload this version writes.
const POSTCARD: u8 = 1;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs into a vector cannot fail.
    postcard::to_extend(value, vec![POSTCARD]).unwrap_or_default()
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(record: &'a TokenRecord) -> Result<T, StoreError> {
    decode_bytes(&record.payload)
}

/// [`decode`] for bytes that are not a record's payload as stored (an opened [`SuccessorPair`]).
pub(crate) fn decode_bytes<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, StoreError> {
    match payload.split_first() {
        Some((&POSTCARD, rest)) => {
            postcard::from_bytes(rest).map_err(|e| StoreError::codec("payload", e))
        }
        _ => serde_json::from_slice(payload).map_err(|e| StoreError::codec("payload", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{GrantId, TokenHash, TokenKind, UnixTime};

    fn record(payload: Vec<u8>) -> TokenRecord {
        TokenRecord {
            kind: TokenKind::AccessToken,
            hash: TokenHash::of("t"),
            grant_id: GrantId("g".into()),
            expires_at: UnixTime(1),
            payload,
        }
    }

    #[test]
    fn payloads_round_trip_and_json_ones_are_still_read() {
        let grant = TokenGrant {
            client_id: "mcp_client_abc".into(),
            scopes: vec!["mcp".into(), "files:read".into()],
            resource: "https://mcp.example.com/mcp".into(),
        };
        let binary = record(encode(&grant));
        assert_eq!(binary.payload[0], POSTCARD);
        let view: TokenGrantView<'_> = decode(&binary).unwrap();
        assert_eq!(view.client_id, grant.client_id);
        assert_eq!(view.scopes, grant.scopes);
        assert!(
            matches!(view.resource, std::borrow::Cow::Borrowed(_)),
            "the guard reads the resource in place"
        );

        let legacy = record(serde_json::to_vec(&grant).unwrap());
        let read: TokenGrant = decode(&legacy).unwrap();
        assert_eq!(read.client_id, grant.client_id);
        assert_eq!(read.resource, grant.resource);
    }

    #[test]
    fn a_machines_payload_reads_as_its_grant_and_its_fingerprint() {
        let grant = TokenGrant {
            client_id: "nightly-report".into(),
            scopes: vec!["mcp".into()],
            resource: "https://mcp.example.com/mcp".into(),
        };
        let credentials = [7; 32];
        let stored = record(encode(&MachineTokenGrant {
            grant: &grant,
            credentials: &credentials,
            place: 41,
        }));
        let plain: TokenGrant = decode(&stored).unwrap();
        assert_eq!(plain.client_id, grant.client_id);
        assert_eq!(plain.resource, grant.resource);
        let machine: MachineTokenView<'_> = decode(&stored).unwrap();
        assert_eq!(machine.grant.scopes, grant.scopes);
        assert_eq!(machine.credentials, credentials);
        assert_eq!(machine.place, 41);
        // A grant without a fingerprint is no machine's token.
        assert!(decode::<MachineTokenView<'_>>(&record(encode(&grant))).is_err());
    }

    #[test]
    fn damaged_payloads_are_errors_not_panics() {
        let mut payload = encode(&TokenGrant {
            client_id: "c".into(),
            scopes: vec!["mcp".into()],
            resource: "r".into(),
        });
        payload.truncate(payload.len() - 1);
        assert!(decode::<TokenGrant>(&record(payload)).is_err());
        assert!(decode::<TokenGrant>(&record(vec![POSTCARD, 0xff, 0xff])).is_err());
        assert!(decode::<TokenGrant>(&record(Vec::new())).is_err());
        assert!(decode::<TokenGrant>(&record(b"{".to_vec())).is_err());
    }
}
