//! The owner's passkeys as the console manages them: list, rename, remove (never the last).

use super::{Passkeys, clean_label};
use crate::audit::AuditEvent;
use crate::store::{PasskeyChange, PasskeyRecord, StoreError};

/// Why a change to the owner's passkeys was refused.
#[derive(Debug)]
pub(crate) enum ChangeRefused {
    /// No passkey has that credential id.
    NotFound,
    /// It is the only passkey: without one nobody could approve or sign in again.
    LastPasskey,
    /// The label is empty after cleaning.
    EmptyLabel,
    Store(StoreError),
}

impl From<StoreError> for ChangeRefused {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl Passkeys {
    /// Every passkey, in registration order.
    pub(crate) async fn list(&self) -> Result<Vec<PasskeyRecord>, StoreError> {
        self.store().list().await
    }

    /// Give a passkey a new label (cleaned as at registration).
    pub(crate) async fn rename(
        &self,
        credential_id: &str,
        label: &str,
    ) -> Result<(), ChangeRefused> {
        if label.chars().all(|c| c.is_control() || c.is_whitespace()) {
            return Err(ChangeRefused::EmptyLabel);
        }
        let label = clean_label(Some(label), 0);
        // Applied by the store to the record as it is: an approval recorded meanwhile is kept.
        match self
            .store()
            .modify(credential_id, &PasskeyChange::Renamed { label })
            .await?
        {
            Some(_) => Ok(()),
            None => Err(ChangeRefused::NotFound),
        }
    }

    /// Remove a passkey, refusing to remove the last one: without a passkey nobody could approve a
    /// client or sign in here again.
    pub(crate) async fn remove(&self, credential_id: &str) -> Result<(), ChangeRefused> {
        let all = self.store().list().await?;
        let record = all
            .iter()
            .find(|p| p.credential_id == credential_id)
            .cloned()
            .ok_or(ChangeRefused::NotFound)?;
        if all.len() <= 1 {
            return Err(ChangeRefused::LastPasskey);
        }
        if !self.store().delete(credential_id).await? {
            return Err(ChangeRefused::NotFound);
        }
        // Two removals racing on the last two passkeys both pass the check above; the loser puts
        // its passkey back. Without its setup token: the store refuses a record carrying a used
        // one, and the token stays used anyway (the store remembers every use, even of a passkey
        // since deleted).
        if self.store().list().await?.is_empty() {
            let put_back = PasskeyRecord {
                setup_token_hash: None,
                ..record
            };
            self.store().insert(put_back).await?;
            return Err(ChangeRefused::LastPasskey);
        }
        self.presence.audit().emit(AuditEvent::PasskeyRemoved {
            credential_id: credential_id.to_owned(),
        });
        Ok(())
    }
}
