//! RFC 7009 token revocation.

use super::AuthServer;
use super::budget::{Budget, Refused};
use super::machine::is_machine_grant;
use super::params::Params;
use super::payload::{self, TokenGrant};
use crate::audit::AuditEvent;
use crate::store::{TokenHash, TokenKind};

impl AuthServer {
    /// Revoke a token held by the authenticated client. Unknown tokens, and tokens of other clients,
    /// are answered the same way as success (RFC 7009 §2.2), so a client learns nothing about tokens
    /// it does not hold.
    pub(crate) async fn revoke(
        &self,
        body: &[u8],
        authorization: Option<&str>,
        budget: &Budget,
    ) -> Result<(), Refused> {
        let params = Params::parse(body)?;
        let client = self
            .authenticate_client(authorization, &params, budget)
            .await?;
        let token = params.require("token")?;
        let hash = TokenHash::of(token);
        let order = match params.get("token_type_hint") {
            Some("refresh_token") => [TokenKind::RefreshToken, TokenKind::AccessToken],
            _ => [TokenKind::AccessToken, TokenKind::RefreshToken],
        };
        for kind in order {
            let Some(record) = self.tokens.get(kind, &hash).await? else {
                continue;
            };
            let grant: TokenGrant = payload::decode(&record)?;
            if grant.client_id != client.client_id {
                return Ok(());
            }
            if is_machine_grant(&record.grant_id) {
                self.end_machine_grant(&record.grant_id).await?;
            } else if kind == TokenKind::RefreshToken {
                // Revoking a refresh token ends the grant, its access tokens included (RFC 7009
                // §2.1).
                self.revoke_grant(&record.grant_id).await?;
            } else {
                self.tokens.delete(kind, &hash).await?;
            }
            self.audit.emit(AuditEvent::TokenRevoked {
                client_id: client.client_id.clone(),
                grant_id: record.grant_id.clone(),
                kind: kind.as_str(),
            });
            return Ok(());
        }
        Ok(())
    }
}
