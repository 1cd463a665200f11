//! The owner's passkeys as the console manages them: list, rename, remove (never the last).

use super::{Passkeys, clean_label};
use crate::audit::AuditEvent;
use crate::console::{ConsoleError, PasskeyInfo};
use crate::store::{PasskeyChange, StoreError};

impl Passkeys {
    /// Every passkey, in registration order.
    pub(crate) async fn infos(&self) -> Result<Vec<PasskeyInfo>, StoreError> {
        Ok(self
            .store()
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

    /// Give a passkey a new label (cleaned as at registration).
    pub(crate) async fn rename(
        &self,
        credential_id: &str,
        label: &str,
    ) -> Result<(), ConsoleError> {
        if label.chars().all(|c| c.is_control() || c.is_whitespace()) {
            return Err(ConsoleError::EmptyLabel);
        }
        let label = clean_label(Some(label), 0);
        // Applied by the store to the record as it is: an approval recorded meanwhile is kept.
        match self
            .store()
            .modify(credential_id, &PasskeyChange::Renamed { label })
            .await?
        {
            Some(_) => Ok(()),
            None => Err(ConsoleError::NotFound("passkey")),
        }
    }

    /// Remove a passkey, refusing to remove the last one: without a passkey nobody could approve a
    /// client or sign in here again.
    pub(crate) async fn remove(&self, credential_id: &str) -> Result<(), ConsoleError> {
        let all = self.store().list().await?;
        let record = all
            .iter()
            .find(|p| p.credential_id == credential_id)
            .cloned()
            .ok_or(ConsoleError::NotFound("passkey"))?;
        if all.len() <= 1 {
            return Err(ConsoleError::LastPasskey);
        }
        if !self.store().delete(credential_id).await? {
            return Err(ConsoleError::NotFound("passkey"));
        }
        // Two removals racing on the last two passkeys both pass the check above; the loser puts
        // its passkey back.
        if self.store().list().await?.is_empty() {
            self.store().insert(record).await?;
            return Err(ConsoleError::LastPasskey);
        }
        self.presence.audit().emit(AuditEvent::PasskeyRemoved {
            credential_id: credential_id.to_owned(),
        });
        Ok(())
    }
}
