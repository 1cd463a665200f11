//! RFC 7662 token introspection, for resource servers that are not behind this layer's guard.

use serde::Serialize;

use super::budget::{Budget, Refused};
use super::params::Params;
use super::records::{self, TokenGrant};
use super::{AuthServer, OAuthError, scope};
use crate::store::{TokenHash, TokenKind, TokenRecord, UnixTime};

/// An introspection response. An inactive token says nothing else (RFC 7662 §2.2).
#[derive(Debug, Default, Serialize)]
pub(crate) struct Introspection {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
}

impl AuthServer {
    /// Introspect a token for an authenticated confidential client.
    ///
    /// # Errors
    ///
    /// `invalid_client` unless the caller is a confidential client that authenticated;
    /// `invalid_request` without a `token`.
    pub(crate) async fn introspect(
        &self,
        body: &[u8],
        authorization: Option<&str>,
        budget: &Budget,
    ) -> Result<Introspection, Refused> {
        let params = Params::parse(body)?;
        let caller = self
            .authenticate_client(authorization, &params, budget)
            .await?;
        if caller.secret_hash.is_none() {
            return Err(OAuthError::invalid_client(
                "introspection is for confidential clients (resource servers) only",
            )
            .into());
        }
        let hash = TokenHash::of(params.require("token")?);
        let order = match params.get("token_type_hint") {
            Some("refresh_token") => [TokenKind::RefreshToken, TokenKind::AccessToken],
            _ => [TokenKind::AccessToken, TokenKind::RefreshToken],
        };
        for kind in order {
            if let Some(record) = self.tokens.get(kind, &hash).await? {
                return Ok(self.describe(kind, &record)?);
            }
        }
        Ok(Introspection::default())
    }

    fn describe(&self, kind: TokenKind, record: &TokenRecord) -> Result<Introspection, OAuthError> {
        let grant: TokenGrant = records::decode(record)?;
        if !record.expires_at.is_after(UnixTime::now())
            || grant.resource != self.settings.resource.as_str()
        {
            return Ok(Introspection::default());
        }
        Ok(Introspection {
            active: true,
            client_id: Some(grant.client_id),
            scope: Some(scope::join(&grant.scopes)),
            token_type: (kind == TokenKind::AccessToken).then_some("Bearer"),
            exp: Some(record.expires_at.0),
            aud: Some(grant.resource),
            iss: Some(self.settings.issuer.clone()),
        })
    }
}
