//! The pair a refresh token was rotated into, kept for the grace window so a retry of that refresh
//! token gets the same pair back rather than a chain of its own.
//!
//! The pair holds two live secrets, and secrets are never stored in plaintext, so it is sealed:
//! AES-256-GCM under a key derived (HKDF-SHA256) from the rotated refresh token itself. The store
//! only ever knows that token's hash, so whoever reads the store cannot open the pair; whoever
//! presents the token can, and could have asked the server for it anyway. No server-wide secret
//! is needed, and any instance sharing the store can open it.
//!
//! A sealed payload is [`SEALED`], a random salt, a random nonce, then the ciphertext and tag. The
//! grant id is the associated data, so a pair opens only in the grant it was sealed for.

use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use aes_gcm::{Aes256Gcm, Key};
use hkdf::Hkdf;
use sha2::Sha256;

use super::payload::{self, SuccessorPair};
use crate::store::{GrantId, StoreError, TokenHash, TokenKind, TokenRecord, UnixTime};

/// The first byte of a sealed pair: the layout below and the key derivation's label.
const SEALED: u8 = 1;
/// Binds derived keys to this one use of a refresh token.
const KEY_LABEL: &[u8] = b"mcp-oauth refresh successor v1";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;

/// The store record keeping `pair`, the successor of the refresh token `presented`, until
/// `expires_at`: keyed by that token's hash, in its grant (so revoking the grant removes it).
pub(crate) fn seal(
    presented: &str,
    grant_id: &GrantId,
    pair: &SuccessorPair,
    expires_at: UnixTime,
) -> Result<TokenRecord, StoreError> {
    let salt: [u8; SALT_LEN] = rand::random();
    let nonce: [u8; NONCE_LEN] = rand::random();
    let sealed = cipher(presented, &salt)?
        .encrypt(
            &Nonce::<Aes256Gcm>::from(nonce),
            Payload {
                msg: &payload::encode(pair),
                aad: grant_id.0.as_bytes(),
            },
        )
        .map_err(|e| StoreError::codec("payload", e.to_string()))?;
    let mut payload = Vec::with_capacity(1 + SALT_LEN + NONCE_LEN + sealed.len());
    payload.push(SEALED);
    payload.extend_from_slice(&salt);
    payload.extend_from_slice(&nonce);
    payload.extend_from_slice(&sealed);
    Ok(TokenRecord {
        kind: TokenKind::RefreshSuccessor,
        hash: TokenHash::of(presented),
        grant_id: grant_id.clone(),
        expires_at,
        payload,
    })
}

/// The pair sealed in `record` for the refresh token `presented`. An error when the record was
/// sealed for another token or grant, or is damaged.
pub(crate) fn open(presented: &str, record: &TokenRecord) -> Result<SuccessorPair, StoreError> {
    let damaged = || StoreError::codec("payload", "a sealed refresh successor does not open");
    let Some((&SEALED, rest)) = record.payload.split_first() else {
        return Err(damaged());
    };
    if rest.len() < SALT_LEN + NONCE_LEN {
        return Err(damaged());
    }
    let (salt, rest) = rest.split_at(SALT_LEN);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| damaged())?;
    let plain = cipher(presented, salt)?
        .decrypt(
            &Nonce::<Aes256Gcm>::from(nonce),
            Payload {
                msg: sealed,
                aad: record.grant_id.0.as_bytes(),
            },
        )
        .map_err(|_| damaged())?;
    payload::decode_bytes(&plain)
}

/// AES-256-GCM keyed by HKDF-SHA256 of the refresh token and the salt.
fn cipher(presented: &str, salt: &[u8]) -> Result<Aes256Gcm, StoreError> {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), presented.as_bytes())
        .expand(KEY_LABEL, &mut key)
        .map_err(|e| StoreError::codec("payload", e.to_string()))?;
    Ok(Aes256Gcm::new(&Key::<Aes256Gcm>::from(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> SuccessorPair {
        SuccessorPair {
            access_token: "mcp_at_the-successor-access-token".into(),
            access_expires_at: UnixTime(1_000),
            refresh_token: "mcp_rt_the-successor-refresh-token".into(),
            scopes: vec!["mcp".into()],
        }
    }

    fn grant() -> GrantId {
        GrantId("grant-1".into())
    }

    #[test]
    fn only_the_presented_token_opens_its_pair() {
        let record = seal("mcp_rt_rotated", &grant(), &pair(), UnixTime(60)).unwrap();
        assert_eq!(record.kind, TokenKind::RefreshSuccessor);
        assert_eq!(record.hash, TokenHash::of("mcp_rt_rotated"));
        assert_eq!(record.expires_at, UnixTime(60));
        assert_eq!(open("mcp_rt_rotated", &record).unwrap(), pair());
        assert!(open("mcp_rt_rotated ", &record).is_err(), "another token");
        assert!(open("mcp_rt_successor", &record).is_err());
    }

    #[test]
    fn the_payload_holds_no_token_and_differs_each_time() {
        let first = seal("mcp_rt_rotated", &grant(), &pair(), UnixTime(60)).unwrap();
        let again = seal("mcp_rt_rotated", &grant(), &pair(), UnixTime(60)).unwrap();
        assert_ne!(first.payload, again.payload, "fresh salt and nonce");
        for secret in [
            "mcp_rt_rotated",
            "the-successor-access-token",
            "the-successor-refresh-token",
        ] {
            assert!(
                !first
                    .payload
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "{secret} in the sealed payload"
            );
        }
    }

    #[test]
    fn a_tampered_or_moved_pair_does_not_open() {
        let record = seal("mcp_rt_rotated", &grant(), &pair(), UnixTime(60)).unwrap();
        let mut tampered = record.clone();
        let last = tampered.payload.len() - 1;
        tampered.payload[last] ^= 1;
        assert!(open("mcp_rt_rotated", &tampered).is_err());
        let moved = TokenRecord {
            grant_id: GrantId("grant-2".into()),
            ..record.clone()
        };
        assert!(open("mcp_rt_rotated", &moved).is_err(), "another grant");
        for payload in [Vec::new(), vec![SEALED], vec![SEALED; 20], vec![2; 80]] {
            let damaged = TokenRecord {
                payload,
                ..record.clone()
            };
            assert!(open("mcp_rt_rotated", &damaged).is_err());
        }
    }
}
