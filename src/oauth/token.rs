//! The token endpoint: the `authorization_code` and `refresh_token` grants.

use serde::Serialize;

use super::budget::{Budget, Refused};
use super::clients::Client;
use super::grants::Minted;
use super::params::Params;
use super::records::{self, CodeGrant, TokenGrant};
use super::secret::{self, Secret};
use super::{AuthServer, ErrorCode, OAuthError, pkce, scope};
use crate::audit::AuditEvent;
use crate::store::{Consumed, GrantId, TokenHash, TokenKind, TokenRecord, UnixTime};

/// A successful token response (OAuth 2.1 §3.2.3).
#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    access_token: Secret,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<Secret>,
    scope: String,
}

impl AuthServer {
    /// Handle a token request. `authorization` is the raw `Authorization` header; client
    /// authentication spends the caller's `budget`.
    pub(crate) async fn token(
        &self,
        body: &[u8],
        authorization: Option<&str>,
        budget: &Budget,
    ) -> Result<TokenResponse, Refused> {
        let params = Params::parse(body)?;
        let grant_type = params.require("grant_type")?;
        if !matches!(grant_type, "authorization_code" | "refresh_token") {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "grant_type must be authorization_code or refresh_token",
            )
            .into());
        }
        let client = self
            .authenticate_client(authorization, &params, budget)
            .await?;
        let tokens = if grant_type == "authorization_code" {
            self.exchange_code(&client, &params).await?
        } else {
            self.refresh(&client, &params).await?
        };
        Ok(tokens)
    }

    async fn exchange_code(
        &self,
        client: &Client,
        params: &Params<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let code = params.require("code")?;
        let verifier = params.require("code_verifier")?;
        if !pkce::is_valid_verifier(verifier) {
            return Err(OAuthError::invalid_request(
                "code_verifier must be 43-128 unreserved characters",
            ));
        }
        self.settings.resource.check(params.get("resource"))?;
        let hash = TokenHash::of(code);
        let check = |grant: &CodeGrant| -> Result<(), OAuthError> {
            if grant.client_id != client.client_id {
                return Err(OAuthError::invalid_grant(
                    "the code was issued to another client",
                ));
            }
            if grant.resource != self.settings.resource.as_str() {
                return Err(OAuthError::invalid_grant(
                    "the code was issued for another resource",
                ));
            }
            if params
                .get("redirect_uri")
                .is_some_and(|uri| uri != grant.redirect_uri)
            {
                return Err(OAuthError::invalid_grant(
                    "redirect_uri differs from the authorization request",
                ));
            }
            if !pkce::verify(verifier, &grant.code_challenge) {
                return Err(OAuthError::invalid_grant(
                    "code_verifier does not match the challenge",
                ));
            }
            Ok(())
        };

        // Check before using the code up, so a stolen code without its verifier cannot burn it.
        if let Some(record) = self.tokens.get(TokenKind::AuthorizationCode, &hash).await? {
            check(&records::decode(&record)?)?;
        }
        match self
            .tokens
            .consume(TokenKind::AuthorizationCode, &hash)
            .await?
        {
            Some(Consumed::First(record)) => {
                let grant: CodeGrant = records::decode(&record)?;
                check(&grant)?;
                let token_grant = TokenGrant {
                    client_id: grant.client_id,
                    scopes: grant.scopes,
                    resource: grant.resource,
                };
                self.audit.emit(AuditEvent::CodeRedeemed {
                    client_id: client.client_id.clone(),
                    grant_id: record.grant_id.clone(),
                });
                self.issue(
                    &record.grant_id,
                    &token_grant,
                    &token_grant.scopes,
                    client.may_refresh,
                )
                .await
            }
            Some(Consumed::Replayed { record, .. }) => {
                // RFC 6749 §4.1.2 / OAuth 2.1 §4.1.3: a replayed code revokes what it produced, but
                // only when the replay is otherwise valid, or anyone could revoke anyone's grant.
                if check(&records::decode(&record)?).is_ok() {
                    self.revoke_grant(&record.grant_id).await?;
                    self.audit.emit(AuditEvent::CodeReplayed {
                        client_id: client.client_id.clone(),
                        grant_id: record.grant_id.clone(),
                    });
                }
                Err(OAuthError::invalid_grant(
                    "the authorization code was already used; tokens issued from it are revoked",
                ))
            }
            None => Err(OAuthError::invalid_grant(
                "the authorization code is invalid or expired",
            )),
        }
    }

    async fn refresh(
        &self,
        client: &Client,
        params: &Params<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let presented = params.require("refresh_token")?;
        self.settings.resource.check(params.get("resource"))?;
        let hash = TokenHash::of(presented);
        let check = |grant: &TokenGrant| -> Result<Vec<String>, OAuthError> {
            if grant.client_id != client.client_id {
                return Err(OAuthError::invalid_grant(
                    "the refresh token was issued to another client",
                ));
            }
            if grant.resource != self.settings.resource.as_str() {
                return Err(OAuthError::invalid_grant(
                    "the refresh token was issued for another resource",
                ));
            }
            scope::narrow(params.get("scope"), &grant.scopes, &self.settings.scopes).map_err(|s| {
                OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("scope {} was not granted", super::params::printable(&s)),
                )
            })
        };

        let mut checked = None;
        if let Some(record) = self.tokens.get(TokenKind::RefreshToken, &hash).await? {
            let grant: TokenGrant = records::decode(&record)?;
            let scopes = check(&grant)?;
            checked = Some((record.payload, grant, scopes));
        }
        match self.tokens.consume(TokenKind::RefreshToken, &hash).await? {
            Some(Consumed::First(record)) => {
                let (grant, scopes) = match checked {
                    // What was consumed is what was just checked: no need to decode it again.
                    Some((payload, grant, scopes)) if payload == record.payload => (grant, scopes),
                    _ => {
                        let grant: TokenGrant = records::decode(&record)?;
                        let scopes = check(&grant)?;
                        (grant, scopes)
                    }
                };
                self.audit.emit(AuditEvent::RefreshRotated {
                    client_id: client.client_id.clone(),
                    grant_id: record.grant_id.clone(),
                });
                self.issue(&record.grant_id, &grant, &scopes, true).await
            }
            Some(Consumed::Replayed {
                record,
                consumed_at,
            }) => {
                let grant: TokenGrant = records::decode(&record)?;
                let scopes = check(&grant)?;
                // Times are whole seconds, so the window is inclusive: a retry in the same breath
                // is always inside a grace of 1 s or more. A grace of 0 means strict.
                let grace = self.settings.refresh_grace_secs;
                let within_grace =
                    grace > 0 && UnixTime::now().0 <= consumed_at.0.saturating_add(grace);
                if within_grace {
                    // A client refreshing from several nodes at once, or retrying a lost response:
                    // give it a working pair of its own rather than log the user out.
                    self.audit.emit(AuditEvent::RefreshReusedWithinGrace {
                        client_id: client.client_id.clone(),
                        grant_id: record.grant_id.clone(),
                    });
                    return self.issue(&record.grant_id, &grant, &scopes, true).await;
                }
                self.revoke_grant(&record.grant_id).await?;
                self.audit.emit(AuditEvent::RefreshReuseRevoked {
                    client_id: client.client_id.clone(),
                    grant_id: record.grant_id.clone(),
                });
                Err(OAuthError::invalid_grant(
                    "the refresh token was already used; the grant is revoked, authorize again",
                ))
            }
            None => Err(OAuthError::invalid_grant(
                "the refresh token is invalid, expired or revoked",
            )),
        }
    }

    /// Mint an access token (and a refresh token, when the client may refresh) within a grant.
    async fn issue(
        &self,
        grant_id: &GrantId,
        grant: &TokenGrant,
        access_scopes: &[String],
        with_refresh: bool,
    ) -> Result<TokenResponse, OAuthError> {
        let now = UnixTime::now();
        let mut minted = Minted::default();
        let access_token = secret::generate(secret::prefix::ACCESS_TOKEN);
        // The refresh token keeps the grant's full scope even when this access token was narrowed
        // (OAuth 2.1 §4.3.3); usually they are the same, and so is the payload.
        let grant_payload = records::encode(grant);
        let access_payload = if access_scopes == grant.scopes {
            grant_payload.clone()
        } else {
            records::encode(&TokenGrant {
                client_id: grant.client_id.clone(),
                scopes: access_scopes.to_vec(),
                resource: grant.resource.clone(),
            })
        };
        let access_record = TokenRecord {
            kind: TokenKind::AccessToken,
            hash: TokenHash::of(&access_token),
            grant_id: grant_id.clone(),
            expires_at: now.plus(self.settings.token_lifetime_secs),
            payload: access_payload,
        };
        minted.add(
            access_record.kind,
            access_record.hash,
            access_record.expires_at,
        );
        self.tokens.insert(access_record).await?;
        let refresh_token = if with_refresh {
            let token = secret::generate(secret::prefix::REFRESH_TOKEN);
            let refresh_record = TokenRecord {
                kind: TokenKind::RefreshToken,
                hash: TokenHash::of(&token),
                grant_id: grant_id.clone(),
                expires_at: now.plus(self.settings.refresh_token_lifetime_secs),
                payload: grant_payload,
            };
            minted.add(
                refresh_record.kind,
                refresh_record.hash,
                refresh_record.expires_at,
            );
            self.tokens.insert(refresh_record).await?;
            Some(token)
        } else {
            None
        };
        self.settle_issue(grant_id, grant, &minted).await?;
        Ok(TokenResponse {
            access_token: access_token.into(),
            token_type: "Bearer",
            expires_in: self.settings.token_lifetime_secs,
            refresh_token: refresh_token.map(Secret::from),
            scope: scope::join(access_scopes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_tokens() {
        let response = TokenResponse {
            access_token: "mcp_at_secret-access".into(),
            token_type: "Bearer",
            expires_in: 60,
            refresh_token: Some("mcp_rt_secret-refresh".into()),
            scope: "mcp".to_owned(),
        };
        let output = format!("{response:?}");
        assert!(!output.contains("secret-access"), "{output}");
        assert!(!output.contains("secret-refresh"), "{output}");
        assert!(output.contains("Bearer"), "{output}");
    }
}
