//! RFC 7662 token introspection, for resource servers that are not behind this layer's guard.
//! Only the clients the configuration names as resource servers may introspect.

use serde::Serialize;

use super::budget::{Budget, Refused};
use super::clients::Client;
use super::params::Params;
use super::payload::{self, TokenGrant};
use super::{AuthServer, OAuthError, TokenSubject, scope};
use crate::store::{TokenHash, TokenKind, TokenRecord};

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
    /// A machine's token only: the machine's client id. RFC 7662 §2.2 leaves `sub` to the
    /// server; RFC 9068 §2.2 sets the convention that a token no person authorized
    /// (`client_credentials`) has its client as subject. An owner-approved token has none, so
    /// `sub` present and equal to `client_id` is how a resource server tells a machine's token.
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
}

/// RFC 7662's `token_type` takes RFC 6749 §5.1 access token types, which have no value for a
/// refresh token; this is the identifier RFC 8693 §3 registers for one, and it can never be
/// mistaken for `Bearer`.
const REFRESH_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";

impl AuthServer {
    /// Introspect a token for a configured resource server.
    ///
    /// Access tokens are described to every resource server. A refresh token is a credential
    /// between one client and the token endpoint, never presented to a resource server, so it
    /// is active only to its own client: to anyone else it is just inactive.
    ///
    /// # Errors
    ///
    /// `invalid_client` unless the caller is a configured resource server that authenticated;
    /// `invalid_request` without a `token`.
    pub(crate) async fn introspect(
        &self,
        body: &[u8],
        authorization: Option<&str>,
        budget: &Budget,
    ) -> Result<Introspection, Refused> {
        let params = Params::parse(body)?;
        let caller = self
            .authenticate_resource_server(authorization, &params, budget)
            .await?;
        let hash = TokenHash::of(params.require("token")?);
        let order = match params.get("token_type_hint") {
            Some("refresh_token") => [TokenKind::RefreshToken, TokenKind::AccessToken],
            _ => [TokenKind::AccessToken, TokenKind::RefreshToken],
        };
        for kind in order {
            if let Some(record) = self.tokens.get(kind, &hash).await? {
                return Ok(self.describe(kind, &record, &caller)?);
            }
        }
        Ok(Introspection::default())
    }

    fn describe(
        &self,
        kind: TokenKind,
        record: &TokenRecord,
        caller: &Client,
    ) -> Result<Introspection, OAuthError> {
        let grant: TokenGrant = payload::decode(record)?;
        let is_access = kind == TokenKind::AccessToken;
        if grant.resource != self.settings.resource.as_str()
            || !(is_access || grant.client_id == caller.client_id)
        {
            return Ok(Introspection::default());
        }
        // The bearer guard's own check: a token it refuses is inactive here too.
        let Some((subject, scopes)) = self.standing(record, &grant.client_id, grant.scopes) else {
            return Ok(Introspection::default());
        };
        Ok(Introspection {
            active: true,
            sub: (subject == TokenSubject::Machine).then(|| grant.client_id.clone()),
            client_id: Some(grant.client_id),
            scope: Some(scope::join(&scopes)),
            token_type: Some(if is_access {
                "Bearer"
            } else {
                REFRESH_TOKEN_TYPE
            }),
            exp: Some(record.expires_at.0),
            aud: Some(grant.resource),
            iss: Some(self.settings.issuer.clone()),
        })
    }
}
