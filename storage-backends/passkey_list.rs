//! [`PasskeyList`]: the owner's passkeys and every setup token ever used, as the in-process
//! backends ([`MemoryStore`](super::MemoryStore), [`PasskeyFileStore`](super::PasskeyFileStore))
//! hold them. The rules of the [`PasskeyStore`](crate::store::PasskeyStore) contract live here
//! once; each backend only adds its locking (and, for the file, the write).

use std::collections::BTreeSet;

use crate::store::{PasskeyChange, PasskeyRecord, StoreError, TokenHash};

/// Passkeys in registration order, and the hashes of the setup tokens that registered any of them,
/// kept after the passkey is gone.
#[derive(Clone, Debug, Default)]
pub(crate) struct PasskeyList {
    records: Vec<PasskeyRecord>,
    used_setup_tokens: BTreeSet<TokenHash>,
}

impl PasskeyList {
    /// A list as stored, with the setup tokens recorded as used. A record's own setup token counts
    /// as used even if the stored set misses it (files written before the set existed).
    pub(crate) fn new(
        records: Vec<PasskeyRecord>,
        used_setup_tokens: impl IntoIterator<Item = TokenHash>,
    ) -> Self {
        let mut used_setup_tokens: BTreeSet<_> = used_setup_tokens.into_iter().collect();
        used_setup_tokens.extend(records.iter().filter_map(|r| r.setup_token_hash));
        Self {
            records,
            used_setup_tokens,
        }
    }

    pub(crate) fn records(&self) -> &[PasskeyRecord] {
        &self.records
    }

    pub(crate) fn used_setup_tokens(&self) -> &BTreeSet<TokenHash> {
        &self.used_setup_tokens
    }

    pub(crate) fn get(&self, credential_id: &str) -> Option<&PasskeyRecord> {
        self.records
            .iter()
            .find(|p| p.credential_id == credential_id)
    }

    pub(crate) fn setup_token_used(&self, hash: &TokenHash) -> bool {
        self.used_setup_tokens.contains(hash)
    }

    /// Add a passkey and use up its setup token; refused, changing nothing, if the credential is
    /// registered or the setup token was used.
    pub(crate) fn insert(&mut self, record: PasskeyRecord) -> Result<(), StoreError> {
        if self.get(&record.credential_id).is_some() {
            return Err(StoreError::AlreadyExists { what: "passkey" });
        }
        if let Some(hash) = record.setup_token_hash
            && !self.used_setup_tokens.insert(hash)
        {
            return Err(StoreError::AlreadyExists {
                what: "setup token",
            });
        }
        self.records.push(record);
        Ok(())
    }

    /// Apply `change` to a registered passkey: `None` for an unknown one, else whether anything
    /// changed.
    pub(crate) fn modify(&mut self, credential_id: &str, change: &PasskeyChange) -> Option<bool> {
        self.records
            .iter_mut()
            .find(|p| p.credential_id == credential_id)
            .map(|record| change.apply(record))
    }

    /// Remove a passkey (its setup token stays used); whether there was one.
    pub(crate) fn delete(&mut self, credential_id: &str) -> bool {
        let before = self.records.len();
        self.records.retain(|p| p.credential_id != credential_id);
        self.records.len() < before
    }
}
